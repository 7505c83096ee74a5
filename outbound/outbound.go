// Package outbound decides which outbound SMTP connector carries mail for an
// address outside the organization's accepted domains, the way Exchange
// picks an SMTP connector: by address space (the most specific match wins),
// then by cost (the connector's own plus the link-state path from the
// deciding server to the connector's source server), skipping connectors
// that are down and those whose source servers are all unreachable. It is
// pure: the routing package calls it with a link-state graph and explains
// its answer; the queue manager and the relay package (its Smarthost
// client) do the I/O; config defines the connectors and link state holds
// their cost and state (package linkstate, Graph.Outbound).
package outbound

import (
	"fmt"
	"sort"
	"strings"
)

// Connector is one outbound connector as routing sees it.
type Connector struct {
	Name          string
	AddressSpaces []string // "*", "example.net" (that domain), "*.example.net" (its subdomains)
	Cost          int
	Sources       []string // servers the connector is homed on
	Down          bool
	Why           string // why it is down (link-state causes), for the explanation
}

// Graph is the part of a link-state graph the choice needs
// (*linkstate.Graph).
type Graph interface {
	Reachable(fromServer, toServer string) bool
	PathCost(fromServer, toServer string) (cost int, ok bool)
}

// Considered is one connector whose address space matched, and what became
// of it.
type Considered struct {
	Connector   string `json:"connector"`
	Space       string `json:"address_space"`
	Specificity int    `json:"specificity"`
	Source      string `json:"source,omitempty"` // the cheapest reachable source server
	Cost        int    `json:"cost"`             // connector cost + path cost to Source
	Usable      bool   `json:"usable"`
	Reason      string `json:"reason"`
}

// Choice is the answer for one domain.
type Choice struct {
	Found      bool         // a usable connector was chosen
	Matched    bool         // some connector's address space matched (maybe none usable now)
	Connector  string       `json:"connector,omitempty"`
	Source     string       `json:"source,omitempty"`
	Cost       int          `json:"cost"`
	Considered []Considered `json:"considered"`
}

// Specificity says how well an address space matches a domain: -1 for no
// match, 0 for "*", and more for longer matches; an exact domain beats a
// wildcard over the same suffix. Domains compare without case and without
// a trailing dot.
func Specificity(space, domain string) int {
	space, domain = norm(space), norm(domain)
	switch {
	case space == "*":
		return 0
	case space == domain:
		return 2*labels(space) + 1
	case strings.HasPrefix(space, "*."):
		suffix := space[1:] // ".example.net"
		if strings.HasSuffix(domain, suffix) && len(domain) > len(suffix) {
			return 2 * labels(space[2:])
		}
	}
	return -1
}

func norm(s string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), ".")) }

func labels(d string) int { return strings.Count(d, ".") + 1 }

// Matches reports whether any connector's address space covers domain
// (whether or not it is usable now): what smtpd asks before accepting an
// authenticated user's outside recipient.
func Matches(conns []Connector, domain string) bool {
	for _, c := range conns {
		if best(c, domain) >= 0 {
			return true
		}
	}
	return false
}

func best(c Connector, domain string) int {
	b := -1
	for _, s := range c.AddressSpaces {
		b = max(b, Specificity(s, domain))
	}
	return b
}

func bestSpace(c Connector, domain string) string {
	b, space := -1, ""
	for _, s := range c.AddressSpaces {
		if sp := Specificity(s, domain); sp > b {
			b, space = sp, s
		}
	}
	return space
}

// Choose picks the connector for domain as seen from server at.
func Choose(conns []Connector, domain, at string, g Graph) Choice {
	var out Choice
	out.Considered = []Considered{}
	for _, c := range conns {
		sp := best(c, domain)
		if sp < 0 {
			continue
		}
		out.Matched = true
		cons := Considered{Connector: c.Name, Space: bestSpace(c, domain), Specificity: sp}
		if c.Down {
			cons.Reason = "connector is down"
			if c.Why != "" {
				cons.Reason += " (" + c.Why + ")"
			}
			out.Considered = append(out.Considered, cons)
			continue
		}
		src, cost, ok := cheapestSource(c.Sources, at, g)
		if !ok {
			cons.Reason = "no source server reachable (" + strings.Join(c.Sources, ", ") + ")"
			out.Considered = append(out.Considered, cons)
			continue
		}
		cons.Source, cons.Cost, cons.Usable = src, c.Cost+cost, true
		out.Considered = append(out.Considered, cons)
	}
	// Most specific first, then cheapest, then by name: the order the
	// explanation prints in, and the first usable one wins.
	sort.SliceStable(out.Considered, func(i, j int) bool {
		a, b := out.Considered[i], out.Considered[j]
		if a.Specificity != b.Specificity {
			return a.Specificity > b.Specificity
		}
		if a.Usable != b.Usable {
			return a.Usable
		}
		if a.Cost != b.Cost {
			return a.Cost < b.Cost
		}
		return a.Connector < b.Connector
	})
	for i := range out.Considered {
		c := &out.Considered[i]
		if !c.Usable {
			continue
		}
		if !out.Found {
			out.Found, out.Connector, out.Source, out.Cost = true, c.Connector, c.Source, c.Cost
			c.Reason = fmt.Sprintf("chosen: most specific usable address space %q, lowest cost", c.Space)
			continue
		}
		c.Reason = "not chosen: less specific or more expensive"
	}
	return out
}

// cheapestSource is the reachable source server with the lowest path cost
// from at (ties by name); at itself costs nothing.
func cheapestSource(sources []string, at string, g Graph) (string, int, bool) {
	best, bestCost, found := "", 0, false
	for _, s := range sources {
		var cost int
		if s != at {
			if !g.Reachable(at, s) {
				continue
			}
			c, ok := g.PathCost(at, s)
			if !ok {
				continue
			}
			cost = c
		}
		if !found || cost < bestCost || cost == bestCost && s < best {
			best, bestCost, found = s, cost, true
		}
	}
	return best, bestCost, found
}

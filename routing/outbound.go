package routing

import (
	"strings"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/outbound"
)

// Outbound explains the outbound connector choice for an address outside
// the accepted domains.
type Outbound struct {
	Domain     string                `json:"domain"`
	Connector  string                `json:"connector,omitempty"`
	Smarthost  string                `json:"smarthost,omitempty"`
	Source     string                `json:"source,omitempty"`
	Considered []outbound.Considered `json:"considered"`
}

// outsideDomain returns the recipient's domain when it is not one of the
// organization's: such mail leaves through an outbound connector.
func outsideDomain(snap *directory.Snapshot, rcpt string) (string, bool) {
	d := domainOf(rcpt)
	if d == rcpt || d == "" {
		return "", false // no @: the checks answer "bad address"
	}
	return d, !snap.Accepted(d)
}

// liveConnectors converts the outbound connectors of link state for the
// choice: cost and state as they are now (runtime changes, hop health),
// not as configured.
func liveConnectors(g *linkstate.Graph) []outbound.Connector {
	ls := g.Outbound()
	out := make([]outbound.Connector, len(ls))
	for i, c := range ls {
		out[i] = outbound.Connector{Name: c.Name, AddressSpaces: c.AddressSpaces, Cost: c.Cost, Sources: c.Sources, Down: !c.Up}
		if !c.Up {
			out[i].Why = causesText(c.Causes)
		}
	}
	return out
}

func causesText(cs linkstate.Causes) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(c))
	}
	return b.String()
}

// connectors converts the configured outbound connectors: whether an
// address space covers a domain (CheckSubmission) does not change at
// run time.
func connectors(org *config.Org) []outbound.Connector {
	if org == nil {
		return nil
	}
	out := make([]outbound.Connector, len(org.Outbound))
	for i, c := range org.Outbound {
		out[i] = outbound.Connector{Name: c.Name, AddressSpaces: c.AddressSpaces, Cost: c.Cost, Sources: c.SourceServers, Down: c.State == "down"}
	}
	return out
}

// graphCost adapts a link-state graph to outbound.Graph.
type graphCost struct{ g *linkstate.Graph }

func (g graphCost) Reachable(from, to string) bool { return g.g.Reachable(from, to) }
func (g graphCost) PathCost(from, to string) (int, bool) {
	p, ok := g.g.Path(from, to)
	return p.Cost, ok
}

// decideOutbound routes a recipient outside the organization: to the
// source server of the outbound connector chosen by address space and cost
// (package outbound), which hands it to the connector's smarthost.
func decideOutbound(snap *directory.Snapshot, g *linkstate.Graph, d Decision, domain string) Decision {
	org := snap.Org()
	ch := outbound.Choose(liveConnectors(g), domain, d.At, graphCost{g})
	d.Outbound = &Outbound{Domain: domain, Considered: ch.Considered}
	switch {
	case !ch.Matched:
		return d.fail(&Check{"5.7.1", "relay access denied: " + domain + " is not a domain of this organization and no outbound connector's address space covers it", true})
	case !ch.Found:
		return d.wait("4.4.1", "no outbound connector for "+domain+" is usable now (connector down or source servers unreachable); waiting for link state")
	}
	d.Outbound.Connector, d.Outbound.Source = ch.Connector, ch.Source
	if c := org.OutboundByName(ch.Connector); c != nil {
		d.Outbound.Smarthost = c.Smarthost
	}
	p, _ := g.Path(d.At, ch.Source)
	d.Outcome, d.Server, d.Cost = Deliver, ch.Source, ch.Cost
	d.Route = p.Servers
	if len(d.Route) == 0 {
		d.Route = []string{d.At}
	}
	return d
}

// CheckSubmission is the RCPT-time check of smtpd: CheckRecipient for the
// organization's own addresses; for an outside address, an authenticated
// user may relay when an outbound connector covers its domain, and nobody
// else may (no open relay).
func CheckSubmission(snap *directory.Snapshot, in Input) *Check {
	if domain, outside := outsideDomain(snap, in.Recipient); outside {
		switch {
		case in.SenderUser == "":
			return &Check{"5.7.1", "relay access denied: " + domain + " is not a domain of this organization (authenticate to send outside it)", true}
		case !outbound.Matches(connectors(snap.Org()), domain):
			return &Check{"5.7.1", "relay access denied: no outbound connector's address space covers " + domain, true}
		}
		return nil
	}
	_, c := CheckRecipient(snap, in)
	return c
}

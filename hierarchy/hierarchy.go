// Package hierarchy is routing step 1 (SPEC R2–R6b): given the stores that
// hold a folder's hierarchy, most recently created first, pick the one the
// receiving server sends the message to. It is pure: the routing package
// feeds it the store list from the directory and reachability from link
// state; the replica package takes over on the chosen store's server.
package hierarchy

import (
	"fmt"
	"time"
)

// Rules a choice can be made by.
const (
	RuleLocal        = "local"         // R3
	RuleRoutingGroup = "routing-group" // R4
	RuleFirst        = "first"         // R5
)

// Candidate is a store that holds the hierarchy.
type Candidate struct {
	Store, Server, RoutingGroup string
	Created                     time.Time
	// Pending: the store's copy of the hierarchy is still being
	// replicated; it is skipped whatever its age (readiness beats age).
	Pending bool
}

// Skip reasons. The routing package's decision records the same ones
// (its step 1 over the directory index), so they live here once.
const (
	ReasonPending  = "hierarchy not yet replicated"
	ReasonExcluded = "excluded: did not know the folder on an earlier attempt (R12)"
)

// ReasonUnreachable is the skip reason of a store whose server link state
// cannot reach.
func ReasonUnreachable(server string) string {
	return fmt.Sprintf("server %s unreachable over link state (R6b)", server)
}

// ReasonYoung is the skip reason of a store younger than store_min_age.
func ReasonYoung(created time.Time, minAge time.Duration) string {
	return fmt.Sprintf("created %s, younger than store_min_age %s (R6)", created.UTC().Format(time.RFC3339), minAge)
}

// Params is the receiving server's view.
type Params struct {
	LocalServer, LocalRG string
	Now                  time.Time
	MinAge               time.Duration
	// Excluded stores did not know the folder on an earlier attempt (R12).
	Excluded []string
	// Reachable reports whether a server can be reached over link state
	// (R6b); nil means every server is.
	Reachable func(server string) bool
}

// Skip records a candidate that was not eligible, and why.
type Skip struct {
	Store  string `json:"store"`
	Reason string `json:"reason"`
}

// Result is a step-1 decision.
type Result struct {
	Found  bool
	Chosen Candidate
	Rule   string
	// Skipped lists the stores filtered out (excluded, unreachable, young)
	// and the eligible ones passed over for a better rule.
	Skipped []Skip
	// UsedYoung is set when every eligible store was younger than MinAge,
	// so young stores were used after all (R6).
	UsedYoung bool
	// Unreachable counts stores skipped only because their server was
	// unreachable: with nothing chosen, the message waits (R6b) rather than
	// failing.
	Unreachable int
	// Pending counts stores skipped only because their hierarchy is still
	// being replicated: with nothing chosen, the message waits for them.
	Pending int
}

// Choose applies R3–R6b to stores (most recently created first, R2).
func Choose(stores []Candidate, p Params) Result {
	// One allocation for the explanation: every store lands in Skipped
	// except the chosen one.
	r := Result{Skipped: make([]Skip, 0, len(stores))}
	// Filter pass: exclusions and reachability first; age is applied to what
	// remains, so "no older store" means no older eligible store.
	var eligibleBuf, poolBuf [64]int // hierarchies held by up to 64 stores need no heap
	eligible := eligibleBuf[:0]
	old := 0
	for i, c := range stores {
		switch {
		case contains(p.Excluded, c.Store):
			r.Skipped = append(r.Skipped, Skip{c.Store, ReasonExcluded})
		case p.Reachable != nil && c.Server != p.LocalServer && !p.Reachable(c.Server):
			r.Unreachable++
			r.Skipped = append(r.Skipped, Skip{c.Store, ReasonUnreachable(c.Server)})
		case c.Pending:
			r.Pending++
			r.Skipped = append(r.Skipped, Skip{c.Store, ReasonPending})
		default:
			eligible = append(eligible, i)
			if !young(c, p) {
				old++
			}
		}
	}
	if len(eligible) == 0 {
		return r
	}
	useYoung := old == 0
	r.UsedYoung = useYoung && p.MinAge > 0
	pool := eligible[:0:0]
	if useYoung {
		pool = eligible
	} else {
		pool = poolBuf[:0]
		for _, i := range eligible {
			if young(stores[i], p) {
				c := stores[i]
				r.Skipped = append(r.Skipped, Skip{c.Store, ReasonYoung(c.Created, p.MinAge)})
				continue
			}
			pool = append(pool, i)
		}
	}
	pick := -1
	for _, i := range pool {
		if stores[i].Server == p.LocalServer {
			pick, r.Rule = i, RuleLocal
			break
		}
	}
	if pick < 0 {
		for _, i := range pool {
			if stores[i].RoutingGroup == p.LocalRG {
				pick, r.Rule = i, RuleRoutingGroup
				break
			}
		}
	}
	if pick < 0 {
		pick, r.Rule = pool[0], RuleFirst
	}
	for _, i := range pool {
		if i != pick {
			r.Skipped = append(r.Skipped, Skip{stores[i].Store, PassedOver(r.Rule)})
		}
	}
	r.Found, r.Chosen = true, stores[pick]
	return r
}

// PassedOver is the skip reason of an eligible store not chosen by rule.
// It returns constant strings: it runs for every store of a
// hierarchy on every decision, so it must not allocate.
func PassedOver(rule string) string {
	switch rule {
	case RuleLocal:
		return "passed over: a store on the local server is preferred (R3)"
	case RuleRoutingGroup:
		return "passed over: an earlier-listed store in the local routing group is preferred (R4)"
	default:
		return "passed over: the first store in the list is taken (R5)"
	}
}

func young(c Candidate, p Params) bool {
	return p.MinAge > 0 && p.Now.Sub(c.Created) < p.MinAge
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

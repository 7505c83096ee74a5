// Package replica is routing step 2 (SPEC R7–R10): on the server of the
// hierarchy store chosen in step 1, pick the content replica of the folder
// to deliver to: local, else in the same routing group, else the reachable
// one with the lowest-cost path over link state. It is pure: the routing
// package gives it the replica list from the directory and a link-state
// graph (package linkstate).
package replica

import (
	"hash/fnv"
	"sort"
)

// Rules a choice can be made by.
const (
	RuleLocal        = "local"         // R7
	RuleRoutingGroup = "routing-group" // R8
	RuleLowestCost   = "lowest-cost"   // R9
)

// Reasons a replica is given in Considered. The routing package's decision
// records the same ones (its step 2 over the directory index).
const (
	ReasonUnreachable = "unreachable: no path of up connectors, or its server is down (R10)"
	ReasonChosen      = "chosen"
)

// Candidate is a store holding a replica.
type Candidate struct{ Store, Server, RoutingGroup string }

// Graph is what step 2 needs of link state.
type Graph interface {
	RGCost(fromRG, toRG string) (cost, hops int, ok bool)
	Reachable(fromServer, toServer string) bool
}

// Params is the hierarchy server's view.
type Params struct {
	Server, RoutingGroup string
	// Spread hashes SpreadKey (the message id) over the equal-cost set
	// instead of taking the first by name, as Exchange spread load.
	Spread    bool
	SpreadKey string
}

// Considered is one replica and what step 2 made of it.
type Considered struct {
	Store     string `json:"store"`
	Server    string `json:"server"`
	Reachable bool   `json:"reachable"`
	Cost      int    `json:"cost"`
	Hops      int    `json:"hops"`
	Reason    string `json:"reason,omitempty"`
}

// Result is a step-2 decision.
type Result struct {
	Found      bool
	Chosen     Candidate
	Rule       string
	Cost, Hops int
	Considered []Considered
}

// Choose applies R7–R10 to a folder's replicas.
func Choose(reps []Candidate, g Graph, p Params) Result {
	r := Result{Considered: make([]Considered, len(reps))}
	best := -1
	rule := ""
	rank := func(i int) int { // lower is better: local, routing group, elsewhere
		switch {
		case reps[i].Server == p.Server:
			return 0
		case reps[i].RoutingGroup == p.RoutingGroup:
			return 1
		}
		return 2
	}
	for i, c := range reps {
		con := &r.Considered[i]
		con.Store, con.Server = c.Store, c.Server
		if c.Server == p.Server {
			con.Reachable = true
		} else {
			con.Reachable = g.Reachable(p.Server, c.Server)
		}
		if con.Reachable {
			con.Cost, con.Hops, _ = g.RGCost(p.RoutingGroup, c.RoutingGroup)
		} else {
			con.Reason = ReasonUnreachable
			continue
		}
		if best < 0 || better(reps, r.Considered, i, best, rank) {
			best = i
		}
	}
	if best < 0 {
		return r
	}
	switch rank(best) {
	case 0:
		rule = RuleLocal
	case 1:
		rule = RuleRoutingGroup
	default:
		rule = RuleLowestCost
		if p.Spread {
			best = spread(reps, r.Considered, best, p.SpreadKey, rank)
		}
	}
	for i := range r.Considered {
		if i != best && r.Considered[i].Reachable {
			r.Considered[i].Reason = PassedOver(rule)
		}
	}
	r.Found, r.Chosen, r.Rule = true, reps[best], rule
	r.Cost, r.Hops = r.Considered[best].Cost, r.Considered[best].Hops
	r.Considered[best].Reason = ReasonChosen
	return r
}

// better orders replicas: rank (local, RG, remote); within a rank, for
// remote ones lowest cost, then fewest hops; then configured order for
// local/RG ones and store name for remote ones (deterministic ties, R9).
func better(reps []Candidate, cs []Considered, i, j int, rank func(int) int) bool {
	ri, rj := rank(i), rank(j)
	if ri != rj {
		return ri < rj
	}
	if ri < 2 {
		return false // keep the earlier-listed one
	}
	if cs[i].Cost != cs[j].Cost {
		return cs[i].Cost < cs[j].Cost
	}
	if cs[i].Hops != cs[j].Hops {
		return cs[i].Hops < cs[j].Hops
	}
	return reps[i].Store < reps[j].Store
}

func spread(reps []Candidate, cs []Considered, best int, key string, rank func(int) int) int {
	var set []int
	for i := range reps {
		if cs[i].Reachable && rank(i) == 2 && cs[i].Cost == cs[best].Cost {
			set = append(set, i)
		}
	}
	if len(set) < 2 {
		return best
	}
	sort.Slice(set, func(a, b int) bool { return reps[set[a]].Store < reps[set[b]].Store })
	h := fnv.New32a()
	h.Write([]byte(key))
	return set[int(h.Sum32()%uint32(len(set)))]
}

// PassedOver is the reason of a reachable replica not chosen by rule: a
// constant string, so recording it does not allocate.
func PassedOver(rule string) string {
	switch rule {
	case RuleLocal:
		return "passed over: a replica on the hierarchy store's server is preferred (R7)"
	case RuleRoutingGroup:
		return "passed over: a replica in the same routing group is preferred (R8)"
	default:
		return "passed over: a lower-cost (or equal-cost, earlier by hops/name) replica was chosen (R9)"
	}
}

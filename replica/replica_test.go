package replica_test

import (
	"fmt"
	"testing"

	"pfrouter/replica"
)

// fakeGraph gives fixed costs per routing group from rg0; servers in
// unreachable are down or cut off.
type fakeGraph struct {
	cost        map[string][2]int // rg -> cost, hops
	unreachable map[string]bool
}

func (g fakeGraph) RGCost(from, to string) (int, int, bool) {
	if from == to {
		return 0, 0, true
	}
	c, ok := g.cost[to]
	return c[0], c[1], ok
}

func (g fakeGraph) Reachable(from, to string) bool {
	return !g.unreachable[to]
}

var g = fakeGraph{cost: map[string][2]int{"rg1": {10, 1}, "rg2": {10, 2}, "rg3": {5, 1}, "rg4": {10, 1}}, unreachable: map[string]bool{}}

func c(store, server, rg string) replica.Candidate {
	return replica.Candidate{Store: store, Server: server, RoutingGroup: rg}
}

var here = replica.Params{Server: "s0", RoutingGroup: "rg0"}

// R7–R10 on Choose itself.
func TestChoose(t *testing.T) {
	cases := []struct {
		name  string
		reps  []replica.Candidate
		g     fakeGraph
		want  string
		rule  string
		found bool
	}{
		{"R7 local beats everything", []replica.Candidate{c("r3", "s3", "rg3"), c("loc", "s0", "rg0"), c("rg", "s0b", "rg0")}, g, "loc", replica.RuleLocal, true},
		{"R8 same routing group, earlier listed", []replica.Candidate{c("r3", "s3", "rg3"), c("rgB", "s0c", "rg0"), c("rgA", "s0b", "rg0")}, g, "rgB", replica.RuleRoutingGroup, true},
		{"R9 lowest cost", []replica.Candidate{c("r1", "s1", "rg1"), c("r3", "s3", "rg3")}, g, "r3", replica.RuleLowestCost, true},
		{"R9 tie: fewer hops", []replica.Candidate{c("a2", "s2", "rg2"), c("z1", "s1", "rg1")}, g, "z1", replica.RuleLowestCost, true},
		{"R9 tie: name", []replica.Candidate{c("z1", "s1", "rg1"), c("b4", "s4", "rg4")}, g, "b4", replica.RuleLowestCost, true},
		{"R10 best unreachable: next", []replica.Candidate{c("r1", "s1", "rg1"), c("r3", "s3", "rg3")},
			fakeGraph{cost: g.cost, unreachable: map[string]bool{"s3": true}}, "r1", replica.RuleLowestCost, true},
		{"R10 same-RG replica on a down server: remote", []replica.Candidate{c("rg", "s0b", "rg0"), c("r3", "s3", "rg3")},
			fakeGraph{cost: g.cost, unreachable: map[string]bool{"s0b": true}}, "r3", replica.RuleLowestCost, true},
		{"R10 none reachable", []replica.Candidate{c("r1", "s1", "rg1")},
			fakeGraph{cost: g.cost, unreachable: map[string]bool{"s1": true}}, "", "", false},
		{"no replicas", nil, g, "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := replica.Choose(tc.reps, tc.g, here)
			if r.Found != tc.found || r.Chosen.Store != tc.want || r.Rule != tc.rule {
				t.Fatalf("got %v %q %q, want %v %q %q: %+v", r.Found, r.Chosen.Store, r.Rule, tc.found, tc.want, tc.rule, r.Considered)
			}
			if len(r.Considered) != len(tc.reps) {
				t.Fatalf("considered %d of %d", len(r.Considered), len(tc.reps))
			}
			for _, con := range r.Considered {
				if con.Reason == "" {
					t.Fatalf("no reason for %+v", con)
				}
			}
		})
	}
}

// R9 spread: deterministic per key, over the equal-cost set only.
func TestSpread(t *testing.T) {
	reps := []replica.Candidate{c("r1", "s1", "rg1"), c("r2", "s2", "rg2"), c("r4", "s4", "rg4"), c("r5", "s5", "rg5")}
	gg := fakeGraph{cost: map[string][2]int{"rg1": {10, 1}, "rg2": {10, 2}, "rg4": {10, 1}, "rg5": {11, 1}}}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		p := here
		p.Spread, p.SpreadKey = true, fmt.Sprintf("<%d@x>", i)
		a, b := replica.Choose(reps, gg, p), replica.Choose(reps, gg, p)
		if a.Chosen != b.Chosen {
			t.Fatalf("key %s: %s then %s", p.SpreadKey, a.Chosen.Store, b.Chosen.Store)
		}
		if a.Chosen.Store == "r5" || a.Cost != 10 {
			t.Fatalf("spread chose a costlier replica %s", a.Chosen.Store)
		}
		seen[a.Chosen.Store] = true
	}
	if len(seen) != 3 {
		t.Fatalf("spread used %v, want r1, r2, r4", seen)
	}
	// Spread does not apply to local or same-RG choices.
	p := here
	p.Spread, p.SpreadKey = true, "k"
	if r := replica.Choose(append(reps, c("rg", "s0b", "rg0")), gg, p); r.Chosen.Store != "rg" {
		t.Fatalf("spread overrode R8: %s", r.Chosen.Store)
	}
}

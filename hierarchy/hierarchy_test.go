package hierarchy_test

import (
	"strings"
	"testing"
	"time"

	"pfrouter/hierarchy"
)

var now = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

func cand(store, server, rg string, age time.Duration) hierarchy.Candidate {
	return hierarchy.Candidate{Store: store, Server: server, RoutingGroup: rg, Created: now.Add(-age)}
}

const day = 24 * time.Hour

// Choose on its own (the routing tests cover it through the directory):
// R3–R6b and the explanation it returns.
func TestChoose(t *testing.T) {
	// Newest first (R2), as the directory gives them.
	stores := []hierarchy.Candidate{
		cand("young-local", "s1", "rg1", time.Hour),
		cand("remote", "s9", "rg9", 10*day),
		cand("rg-store", "s2", "rg1", 20*day),
		cand("local", "s1", "rg1", 30*day),
	}
	base := hierarchy.Params{LocalServer: "s1", LocalRG: "rg1", Now: now, MinAge: 48 * time.Hour}
	cases := []struct {
		name        string
		mod         func(*hierarchy.Params)
		want, rule  string
		found       bool
		unreachable int
		usedYoung   bool
	}{
		{"R3 local, young local skipped (R6)", nil, "local", hierarchy.RuleLocal, true, 0, false},
		{"R4 local excluded (R12)", func(p *hierarchy.Params) { p.Excluded = []string{"local"} }, "rg-store", hierarchy.RuleRoutingGroup, true, 0, false},
		{"R5 other routing group", func(p *hierarchy.Params) { p.LocalServer, p.LocalRG = "s5", "rg5" }, "remote", hierarchy.RuleFirst, true, 0, false},
		{"R6 disabled: young local wins", func(p *hierarchy.Params) { p.MinAge = 0 }, "young-local", hierarchy.RuleLocal, true, 0, false},
		{"R6 all old excluded: young used", func(p *hierarchy.Params) { p.Excluded = []string{"remote", "rg-store", "local"} }, "young-local", hierarchy.RuleLocal, true, 0, true},
		{"R6b unreachable skipped", func(p *hierarchy.Params) {
			p.LocalServer, p.LocalRG = "s5", "rg5"
			p.Reachable = func(s string) bool { return s != "s9" }
		}, "rg-store", hierarchy.RuleFirst, true, 1, false},
		{"R6b nothing reachable", func(p *hierarchy.Params) {
			p.LocalServer, p.LocalRG = "s5", "rg5"
			p.Reachable = func(string) bool { return false }
		}, "", "", false, 4, false},
		{"R6b local server never checked", func(p *hierarchy.Params) { p.Reachable = func(string) bool { return false } }, "local", hierarchy.RuleLocal, true, 2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base
			if c.mod != nil {
				c.mod(&p)
			}
			r := hierarchy.Choose(stores, p)
			if r.Found != c.found || r.Chosen.Store != c.want || r.Rule != c.rule || r.Unreachable != c.unreachable || r.UsedYoung != c.usedYoung {
				t.Fatalf("got found=%v %q rule %q unreachable %d young %v; want %v %q %q %d %v\n%+v",
					r.Found, r.Chosen.Store, r.Rule, r.Unreachable, r.UsedYoung, c.found, c.want, c.rule, c.unreachable, c.usedYoung, r.Skipped)
			}
			// Every store is either chosen or skipped with a reason.
			if len(r.Skipped)+btoi(r.Found) != len(stores) {
				t.Fatalf("%d skipped + chosen for %d stores: %+v", len(r.Skipped), len(stores), r.Skipped)
			}
			for _, s := range r.Skipped {
				if s.Store == r.Chosen.Store || !strings.Contains(s.Reason, "(R") {
					t.Fatalf("skip %+v", s)
				}
			}
		})
	}
	if r := hierarchy.Choose(nil, base); r.Found {
		t.Fatal("found in an empty list")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A hierarchy held by many stores (more than the stack buffers) still
// follows the rules.
func TestChooseManyStores(t *testing.T) {
	var stores []hierarchy.Candidate
	for i := 0; i < 200; i++ {
		stores = append(stores, cand("st"+string(rune('A'+i%26))+strings.Repeat("x", i/26), "srv", "rgX", time.Duration(200-i)*day))
	}
	stores = append(stores, cand("mine", "s1", "rg1", time.Hour)) // young local
	r := hierarchy.Choose(stores, hierarchy.Params{LocalServer: "s1", LocalRG: "rg1", Now: now, MinAge: 48 * time.Hour})
	if r.Chosen.Store != stores[0].Store || r.Rule != hierarchy.RuleFirst || len(r.Skipped) != 200 {
		t.Fatalf("got %s %s, %d skipped", r.Chosen.Store, r.Rule, len(r.Skipped))
	}
}

// Readiness beats age (issue 12, with R6): a store whose hierarchy is still
// being replicated is skipped whatever its age, even when it is local and
// old; with only pending stores nothing is chosen and Pending says why.
func TestChoosePendingHierarchy(t *testing.T) {
	pending := func(c hierarchy.Candidate) hierarchy.Candidate { c.Pending = true; return c }
	base := hierarchy.Params{LocalServer: "s1", LocalRG: "rg1", Now: now, MinAge: 48 * time.Hour}
	cases := []struct {
		name    string
		stores  []hierarchy.Candidate
		minAge  time.Duration
		want    string
		pending int
	}{
		{"old local pending: routing group store instead",
			[]hierarchy.Candidate{pending(cand("local", "s1", "rg1", 30*day)), cand("rg", "s2", "rg1", 30*day)}, 48 * time.Hour, "rg", 1},
		{"young pending not used even when all others are young",
			[]hierarchy.Candidate{pending(cand("new", "s1", "rg1", time.Hour)), cand("young-rg", "s2", "rg1", time.Hour)}, 48 * time.Hour, "young-rg", 1},
		{"store_min_age 0 does not let a pending store in",
			[]hierarchy.Candidate{pending(cand("new", "s1", "rg1", time.Hour)), cand("far", "s9", "rg9", 30*day)}, 0, "far", 1},
		{"ready again: chosen by R3",
			[]hierarchy.Candidate{cand("new", "s1", "rg1", 30*day), cand("far", "s9", "rg9", 30*day)}, 48 * time.Hour, "new", 0},
		{"only pending stores: nothing",
			[]hierarchy.Candidate{pending(cand("a", "s1", "rg1", 30*day)), pending(cand("b", "s2", "rg1", 30*day))}, 48 * time.Hour, "", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base
			p.MinAge = c.minAge
			r := hierarchy.Choose(c.stores, p)
			if r.Chosen.Store != c.want || r.Found != (c.want != "") || r.Pending != c.pending {
				t.Fatalf("chose %q (found %v, pending %d), want %q, pending %d", r.Chosen.Store, r.Found, r.Pending, c.want, c.pending)
			}
			for _, sk := range r.Skipped {
				isPending := false
				for _, s := range c.stores {
					if s.Store == sk.Store && s.Pending {
						isPending = true
					}
				}
				if isPending && sk.Reason != hierarchy.ReasonPending {
					t.Fatalf("pending store %s skipped for %q, want %q", sk.Store, sk.Reason, hierarchy.ReasonPending)
				}
			}
		})
	}
}

package linkstate_test

import (
	"testing"

	"pfrouter/linkstate"
)

// The referral graph leaves out connectors with NoReferrals (issue 13):
// paths go around them, and groups reachable only across them are cut off.
func TestReferralsGraphSkipsNoReferralConnectors(t *testing.T) {
	tb, err := linkstate.New(nil, []linkstate.Server{
		{Name: "a1", RoutingGroup: "A"}, {Name: "b1", RoutingGroup: "B"}, {Name: "c1", RoutingGroup: "C"}, {Name: "d1", RoutingGroup: "D"},
	}, []linkstate.Connector{
		{Name: "ab", A: "A", B: "B", Cost: 1, Up: true, NoReferrals: true},
		{Name: "ac", A: "A", B: "C", Cost: 5, Up: true},
		{Name: "cb", A: "C", B: "B", Cost: 5, Up: true},
		{Name: "ad", A: "A", B: "D", Cost: 1, Up: true, NoReferrals: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := tb.Graph()
	r := g.Referrals()
	if c, _, _ := g.RGCost("A", "B"); c != 1 {
		t.Fatalf("mail graph cost A-B = %d, want 1", c)
	}
	if c, _, ok := r.RGCost("A", "B"); !ok || c != 10 {
		t.Fatalf("referral cost A-B = %d %v, want 10 around ab", c, ok)
	}
	if p, ok := r.Path("a1", "b1"); !ok || len(p.Connectors) != 2 || p.Connectors[0] != "ac" {
		t.Fatalf("referral path %+v", p)
	}
	if !g.Reachable("a1", "d1") || r.Reachable("a1", "d1") {
		t.Fatal("d1 must be reachable for mail but not for referrals")
	}
	if r.Version() != g.Version() || r.Referrals() != r {
		t.Fatal("referral graph must keep the version and be its own referral graph")
	}
	// Without such connectors the graph is its own referral graph.
	tb2, _ := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}}, nil)
	if g2 := tb2.Graph(); g2.Referrals() != g2 {
		t.Fatal("no NoReferrals connector: want the same graph")
	}
}

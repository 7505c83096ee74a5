package linkstate

import (
	"testing"
	"time"
)

// O5: a reload swaps a whole new table in; the version keeps growing and
// the graph answers from the new topology.
func TestReplaceSwapsTopologyAndBumpsVersion(t *testing.T) {
	old, err := New(nil, []Server{{Name: "s1", RoutingGroup: "a"}, {Name: "s2", RoutingGroup: "b"}},
		[]Connector{{Name: "ab", A: "a", B: "b", Cost: 10, Up: true}})
	if err != nil {
		t.Fatal(err)
	}
	old.SetCost("ab", 20, "x", time.Now())
	v0 := old.Version()
	nt, err := New(nil, []Server{{Name: "s1", RoutingGroup: "a"}, {Name: "s2", RoutingGroup: "b"}},
		[]Connector{{Name: "ab", A: "a", B: "b", Cost: 40, Up: true}, {Name: "ab2", A: "a", B: "b", Cost: 30, Up: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v := old.Replace(nt); v <= v0 || old.Version() != v {
		t.Fatalf("version %d after replace, was %d", v, v0)
	}
	if c, _, ok := old.Graph().RGCost("a", "b"); !ok || c != 30 {
		t.Fatalf("cost a->b after replace = %d %v, want 30 over ab2", c, ok)
	}
	nt.SetCost("ab2", 99, "x", time.Now()) // the source is not shared
	if c, _ := old.Connector("ab2"); c.Cost != 30 {
		t.Fatalf("replace shares state with its source: %+v", c)
	}
}

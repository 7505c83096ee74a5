package outbound

import "testing"

func TestSpecificity(t *testing.T) {
	for _, c := range []struct {
		space, domain string
		want          int
	}{
		{"*", "example.net", 0},
		{"example.net", "example.net", 5},
		{"EXAMPLE.net.", "example.NET", 5},
		{"example.net", "mail.example.net", -1},
		{"*.example.net", "mail.example.net", 4},
		{"*.example.net", "example.net", -1},
		{"*.example.net", "badexample.net", -1},
		{"example.org", "example.net", -1},
		{"mail.example.net", "mail.example.net", 7},
	} {
		if got := Specificity(c.space, c.domain); got != c.want {
			t.Errorf("Specificity(%q, %q) = %d, want %d", c.space, c.domain, got, c.want)
		}
	}
}

// fakeGraph: servers in down are unreachable; cost[to] is the path cost.
type fakeGraph struct {
	down map[string]bool
	cost map[string]int
}

func (g fakeGraph) Reachable(from, to string) bool { return from == to || !g.down[to] }
func (g fakeGraph) PathCost(from, to string) (int, bool) {
	if g.down[to] {
		return 0, false
	}
	return g.cost[to], true
}

func TestChoose(t *testing.T) {
	all := Connector{Name: "internet", AddressSpaces: []string{"*"}, Cost: 1, Sources: []string{"s1"}}
	backup := Connector{Name: "backup", AddressSpaces: []string{"*"}, Cost: 5, Sources: []string{"s2"}}
	partner := Connector{Name: "partner", AddressSpaces: []string{"example.net", "*.example.net"}, Cost: 50, Sources: []string{"s3", "s2"}}
	g := fakeGraph{down: map[string]bool{}, cost: map[string]int{"s1": 10, "s2": 3, "s3": 1}}
	for _, c := range []struct {
		name      string
		conns     []Connector
		domain    string
		at        string
		g         fakeGraph
		want      string // connector, "" for none
		wantSrc   string
		wantCost  int
		wantMatch bool
	}{
		{name: "most specific wins over cheaper *", conns: []Connector{all, partner}, domain: "example.net", at: "s0", g: g, want: "partner", wantSrc: "s3", wantCost: 51, wantMatch: true},
		{name: "subdomain wildcard", conns: []Connector{all, partner}, domain: "mx.example.net", at: "s0", g: g, want: "partner", wantSrc: "s3", wantCost: 51, wantMatch: true},
		{name: "other domain takes *", conns: []Connector{all, partner}, domain: "example.org", at: "s0", g: g, want: "internet", wantSrc: "s1", wantCost: 11, wantMatch: true},
		{name: "lowest total cost among equals", conns: []Connector{all, backup}, domain: "example.org", at: "s0", g: g, want: "backup", wantSrc: "s2", wantCost: 8, wantMatch: true},
		{name: "at the source server the path is free", conns: []Connector{all, backup}, domain: "example.org", at: "s1", g: g, want: "internet", wantSrc: "s1", wantCost: 1, wantMatch: true},
		{name: "down connector skipped", conns: []Connector{func() Connector { c := partner; c.Down = true; return c }(), all}, domain: "example.net", at: "s0", g: g, want: "internet", wantSrc: "s1", wantCost: 11, wantMatch: true},
		{name: "unreachable source skipped, other source used", conns: []Connector{partner}, domain: "example.net", at: "s0", g: fakeGraph{down: map[string]bool{"s3": true}, cost: g.cost}, want: "partner", wantSrc: "s2", wantCost: 53, wantMatch: true},
		{name: "all sources down: matched but none usable", conns: []Connector{all}, domain: "example.org", at: "s0", g: fakeGraph{down: map[string]bool{"s1": true}, cost: g.cost}, want: "", wantMatch: true},
		{name: "no address space matches", conns: []Connector{partner}, domain: "example.org", at: "s0", g: g, want: "", wantMatch: false},
		{name: "none configured", conns: nil, domain: "example.org", at: "s0", g: g, want: "", wantMatch: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Choose(c.conns, c.domain, c.at, c.g)
			if got.Found != (c.want != "") || got.Connector != c.want || got.Matched != c.wantMatch {
				t.Fatalf("Choose = %+v, want connector %q matched %v", got, c.want, c.wantMatch)
			}
			if c.want != "" && (got.Source != c.wantSrc || got.Cost != c.wantCost) {
				t.Errorf("source %s cost %d, want %s %d", got.Source, got.Cost, c.wantSrc, c.wantCost)
			}
			if Matches(c.conns, c.domain) != c.wantMatch {
				t.Errorf("Matches disagrees with Choose")
			}
			for _, k := range got.Considered {
				if k.Reason == "" {
					t.Errorf("candidate %s has no reason", k.Connector)
				}
			}
		})
	}
}

func FuzzSpecificity(f *testing.F) {
	for _, s := range []string{"*", "example.net", "*.example.net", "", ".", "*."} {
		f.Add(s, "mail.example.net")
	}
	f.Fuzz(func(t *testing.T, space, domain string) {
		sp := Specificity(space, domain)
		if sp > 0 && Specificity(space, domain) != sp {
			t.Fatal("not deterministic")
		}
		if space == "*" && sp != 0 {
			t.Fatalf("* gave %d", sp)
		}
	})
}

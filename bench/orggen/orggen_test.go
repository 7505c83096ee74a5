package orggen_test

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"pfrouter/bench/orggen"
	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
)

var small = orggen.Params{RoutingGroups: 20, Connectors: 60, Servers: 50, PublicStores: 120, Hierarchies: 7, Folders: 400, Users: 30, YoungPercent: 10, DownPercent: 10}

// A generated organization is valid: rendered to YAML it passes
// config.Parse (every cross-reference checked), and parses back to the same
// Org, so the in-memory defaults match config's.
func TestGeneratedOrgValidates(t *testing.T) {
	org := orggen.Generate(1, small)
	src, err := yaml.Marshal(org)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(src, "gen.yaml", ".")
	if err != nil {
		t.Fatalf("generated org invalid: %v", err)
	}
	// Compared as YAML: nil and empty lists are the same to a config file.
	again, err := yaml.Marshal(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(src) {
		t.Fatalf("generated org differs from config.Parse's result (defaults out of step?)\n--- generated\n%.2000s\n--- parsed\n%.2000s", src, again)
	}
	if _, err := directory.New(org, directory.Options{}); err != nil {
		t.Fatal(err)
	}
	tb, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	// The spanning tree keeps every routing group reachable over connectors
	// (down ones aside).
	g := tb.Graph()
	if _, _, ok := g.RGCost(orggen.RoutingGroupName(0), orggen.RoutingGroupName(small.RoutingGroups-1)); !ok && small.DownPercent == 0 {
		t.Fatal("routing groups not joined")
	}
}

// Same seed, same organization; another seed, another one.
func TestDeterministic(t *testing.T) {
	a, b, c := orggen.Generate(7, small), orggen.Generate(7, small), orggen.Generate(8, small)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different organizations")
	}
	if reflect.DeepEqual(a.Connectors, c.Connectors) {
		t.Fatal("different seeds gave the same connectors")
	}
	if len(a.Connectors) != small.Connectors || len(a.Servers) != small.Servers || len(a.Folders) != small.Folders {
		t.Fatalf("sizes %d %d %d", len(a.Connectors), len(a.Servers), len(a.Folders))
	}
}

func TestCheck(t *testing.T) {
	for _, p := range []orggen.Params{
		{RoutingGroups: 10, Connectors: 3},
		{RoutingGroups: 10, Servers: 5},
		{PublicStores: 5, Hierarchies: 10},
		{YoungPercent: 101},
	} {
		if p.Check() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := orggen.Default.Check(); err != nil {
		t.Fatal(err)
	}
}

package directory

import (
	"testing"

	"pfrouter/config"
)

const replaceOrgA = `
organization: T
domains: [a.example]
routing_groups: [{name: rg}]
sites: [{name: s}]
servers:
  - {name: s1, site: s, routing_group: rg, listen: {smtp: "127.0.0.1:0"}, stores: [{name: p1, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Old, hierarchy: PF, addresses: [old@a.example], replicas: [p1]}
`

// O5: a reload swaps the whole directory; old snapshots keep their view,
// new ones see only the new config, and later writes land in the new one.
func TestReplaceSwapsDirectory(t *testing.T) {
	parse := func(y string) *Directory {
		t.Helper()
		org, err := config.Parse([]byte(y), "t.yaml", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(org, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := parse(replaceOrgA)
	before := d.Snapshot()
	nd := parse(replaceOrgA + "  - {path: /New, hierarchy: PF, addresses: [new@a.example], replicas: [p1]}\n")
	d.Replace(nd)
	if _, err := before.Resolve("new@a.example"); err == nil {
		t.Error("a snapshot taken before the swap sees the new folder")
	}
	if _, err := d.Snapshot().Resolve("new@a.example"); err != nil {
		t.Errorf("new folder not visible after the swap: %v", err)
	}
	if _, err := d.AddStore(Store{Name: "p2", Kind: config.StorePublic, Server: "s1", Hierarchy: "PF"}); err != nil {
		t.Fatal(err)
	}
	if d.Snapshot().Store("p2") == nil || d.Org() != nd.Org() {
		t.Error("write after the swap did not land in the new directory")
	}
}

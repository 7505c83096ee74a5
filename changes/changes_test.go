package changes

import (
	"encoding/json"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/gossip"
	"pfrouter/linkstate"
)

const org = `
organization: T
domains: [t.example]
secret: test-secret-0123456789abcdef0123456789
routing_groups: [{name: a}, {name: b}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [a, b], cost: 10, bridgeheads: {a: [s1], b: [s2]}}
outbound:
  - {name: out, address_spaces: ["*"], smarthost: "mx.example.net:25", source_servers: [s2]}
servers:
  - name: s1
    site: one
    routing_group: a
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: s2
    site: one
    routing_group: b
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: s2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /F, hierarchy: PF, addresses: [f@t.example], replicas: [s1-pub]}
`

func build(t *testing.T) (*directory.Directory, *linkstate.Table) {
	t.Helper()
	o, err := config.Parse([]byte(org), "t.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(o, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := linkstate.FromConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return dir, ls
}

func newManager(t *testing.T) (*Manager, *directory.Directory, *linkstate.Table, *int, *time.Duration) {
	dir, ls := build(t)
	changed := 0
	var minAge time.Duration
	m := New(Options{Server: "s1", Directory: dir, LinkState: ls,
		SetMinAge: func(d time.Duration) { minAge = d }, Changed: func() { changed++ }})
	return m, dir, ls, &changed, &minAge
}

// R13b: a record whose origin is not a server of the organization changes
// nothing; one from a server of the organization does.
func TestApplyIgnoresForeignOriginR13b(t *testing.T) {
	m, _, ls, changed, _ := newManager(t)
	raw, _ := json.Marshal(connectorValue{Cost: 99, Up: false, By: "evil"})
	for _, origin := range []string{"intruder", "s2"} {
		if err := m.Apply(gossip.Record{Kind: gossip.KindConnector, Key: "ab", Origin: origin, Version: 7, At: time.Now(), Value: raw}); err != nil {
			t.Fatal(err)
		}
		cn, _ := ls.Connector("ab")
		if origin == "intruder" && (cn.Cost != 10 || !cn.Up || *changed != 0) {
			t.Fatalf("record from outside the organization applied: %+v", cn)
		}
		if origin == "s2" && (cn.Cost != 99 || cn.Up || *changed != 1) {
			t.Fatalf("record from s2 not applied: %+v changed=%d", cn, *changed)
		}
	}
}

// O1 without gossip: each change applies at once with the next local
// version, and a bad one leaves the version where it was.
func TestPublishLocallyO1(t *testing.T) {
	m, dir, ls, _, minAge := newManager(t)
	if err := m.SetConnector("ab", 33, true, "op"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStoreMinAge(5*time.Minute, "op"); err != nil {
		t.Fatal(err)
	}
	if err := m.AddStore("s2", "s2-new", config.StorePublic, "PF", "op"); err != nil {
		t.Fatal(err)
	}
	if err := m.AddReplica("PF", "/F", "s2-new", "op"); err != nil {
		t.Fatal(err)
	}
	if cn, _ := ls.Connector("ab"); cn.Cost != 33 {
		t.Fatalf("cost not applied: %+v", cn)
	}
	if *minAge != 5*time.Minute {
		t.Fatalf("store_min_age not applied: %v", *minAge)
	}
	if st := dir.Snapshot().Store("s2-new"); st == nil || st.Server != "s2" {
		t.Fatalf("store not added: %+v", st)
	}
	if m.Version() != 4 || len(m.Records()) != 4 {
		t.Fatalf("version %d, %d records; want 4, 4", m.Version(), len(m.Records()))
	}
	if err := m.SetConnector("nope", 1, true, "op"); err == nil {
		t.Fatal("change to an unknown connector accepted")
	}
	if m.Version() != 4 {
		t.Fatalf("failed change moved the version to %d", m.Version())
	}
}

// R10: a server in maintenance stays down when failure detection sees it
// alive again; it comes back only when maintenance ends.
func TestMaintenanceOutlivesFailureDetectionR10(t *testing.T) {
	m, _, ls, _, _ := newManager(t)
	down := func() bool {
		for _, s := range ls.Servers() {
			if s.Name == "s2" {
				return s.Down
			}
		}
		t.Fatal("s2 not in link state")
		return false
	}
	m.MemberChanged("s2", false)
	if !down() {
		t.Fatal("dead server not down")
	}
	if err := m.SetServerMaintenance("s2", true, "op"); err != nil {
		t.Fatal(err)
	}
	m.MemberChanged("s2", true)
	if !down() {
		t.Fatal("server in maintenance came back with failure detection")
	}
	if err := m.SetServerMaintenance("s2", false, "op"); err != nil {
		t.Fatal(err)
	}
	if down() {
		t.Fatal("server still down after maintenance ended")
	}
}

// O5: a reload re-applies the runtime changes on the fresh state, keeps
// down servers down, and hands the record's store_min_age to the swap.
func TestReapplyO5(t *testing.T) {
	m, _, _, _, _ := newManager(t)
	if err := m.SetConnector("ab", 44, true, "op"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetStoreMinAge(time.Minute, "op"); err != nil {
		t.Fatal(err)
	}
	m.MemberChanged("s2", false)
	dir2, ls2 := build(t)
	var got time.Duration
	m.Reapply(dir2, ls2, 48*time.Hour, func(d time.Duration) { got = d })
	if got != time.Minute {
		t.Fatalf("swap got store_min_age %v, want the record's 1m", got)
	}
	if cn, _ := ls2.Connector("ab"); cn.Cost != 44 {
		t.Fatalf("connector change not re-applied: %+v", cn)
	}
	for _, s := range ls2.Servers() {
		if s.Name == "s2" && !s.Down {
			t.Fatal("dead server came back with the reload")
		}
	}
}

// Issue 10 item 6, R13b: an outbound connector's hop-health cause comes
// only from its source server (s2), which alone talks to its smarthost;
// clearing it leaves an operator's maintenance in place.
func TestOutboundHealthOnlyFromSource(t *testing.T) {
	m, _, ls, _, _ := newManager(t)
	rec := func(origin string, v uint64, down bool) gossip.Record {
		raw, _ := json.Marshal(outboundHealthValue{Down: down, Reason: "connection refused"})
		return gossip.Record{Kind: gossip.KindOutboundHealth, Key: "out", Origin: origin, Version: v, At: time.Now(), Value: raw}
	}
	if err := m.Apply(rec("s1", 1, true)); err != nil {
		t.Fatal(err)
	}
	if c, _ := ls.Connector("out"); !c.Up {
		t.Fatalf("s1 (not a source) put the connector down: %+v", c)
	}
	if err := m.Apply(rec("s2", 2, true)); err != nil {
		t.Fatal(err)
	}
	if c, _ := ls.Connector("out"); c.Up || !c.Causes.Has(linkstate.CauseHopHealth) {
		t.Fatalf("s2's verdict not applied: %+v", c)
	}
	if err := m.SetConnector("out", 1, false, "op"); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(rec("s2", 9, false)); err != nil {
		t.Fatal(err)
	}
	if c, _ := ls.Connector("out"); c.Up || c.Causes.Has(linkstate.CauseHopHealth) || !c.Causes.Has(linkstate.CauseMaintenance) {
		t.Fatalf("after s2 cleared hop-health: %+v, want down for maintenance only", c)
	}
	if err := m.Apply(gossip.Record{Kind: gossip.KindOutboundHealth, Key: "ab", Origin: "s2", Version: 10, At: time.Now(), Value: []byte(`{"down":true}`)}); err == nil {
		t.Error("outbound health for a connector between routing groups accepted")
	}
}

// Issue 12 item 3, R17: permission records name the folder by identity
// and the principal; whatever order they arrive in, the newest is in
// force, and a config reload re-applies it over the file's permissions.
func TestFolderPermissionNewestWins(t *testing.T) {
	rec := func(version uint64, origin, principal, role string) gossip.Record {
		raw, err := json.Marshal(permissionValue{Hierarchy: "PF", ID: "PF:/F", Principal: principal, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		return gossip.Record{Kind: gossip.KindFolderPermission, Key: "PF:/F|" + principal, Origin: origin, Version: version, At: time.Now(), Value: raw}
	}
	older, newer := rec(3, "s2", "Anonymous", "None"), rec(4, "s1", "Anonymous", "Reviewer")
	for _, order := range [][]gossip.Record{{older, newer}, {newer, older}} {
		m, dir, _, _, _ := newManager(t)
		for _, r := range order {
			if err := m.Apply(r); err != nil {
				t.Fatal(err)
			}
		}
		if got := dir.Snapshot().Folder("PF:/F").Permissions["Anonymous"]; got != "Reviewer" {
			t.Fatalf("after versions %d, %d Anonymous is %q, want the newer Reviewer", order[0].Version, order[1].Version, got)
		}
	}
	if err := (&Manager{}).applyTo(nil, nil, rec(5, "s1", "Anonymous", "Boss"), true); err == nil {
		t.Fatal("a record with an unknown role was applied")
	}

	m, _, _, _, _ := newManager(t)
	if err := m.SetFolderPermission("PF", "/F", "Anonymous", "None", "op"); err != nil {
		t.Fatal(err)
	}
	dir2, ls2 := build(t)
	if got := dir2.Snapshot().Folder("PF:/F").Permissions["Anonymous"]; got != "Contributor" {
		t.Fatalf("the reloaded file gives Anonymous %q, want its default Contributor", got)
	}
	m.Reapply(dir2, ls2, 0, func(time.Duration) {})
	if got := dir2.Snapshot().Folder("PF:/F").Permissions["Anonymous"]; got != "None" {
		t.Fatalf("after a reload Anonymous is %q, want the runtime change's None", got)
	}
}

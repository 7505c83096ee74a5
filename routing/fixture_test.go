package routing_test

// Test fixture: small organizations written as YAML, built the way a server
// builds them (config.Parse, directory.New, linkstate.FromConfig), so the
// rule tests exercise the real directory and link state, not fakes.

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

// now is the fixed clock of every rule test.
var now = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// ts formats a time for a store's created key.
func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ago is now minus d, as a created value.
func ago(d time.Duration) string { return ts(now.Add(-d)) }

// Old dates, all well beyond store_min_age (48h).
const (
	jan = "2025-01-01T00:00:00Z"
	feb = "2025-02-01T00:00:00Z"
	mar = "2025-03-01T00:00:00Z"
	apr = "2025-04-01T00:00:00Z"
	may = "2025-05-01T00:00:00Z"
)

// defaultConnectors is the usual topology:
//
//	rg-a (a1, a2) --ab 10 (a1|b1)-- rg-b (b1, b2) --bc 5 (b1|c1)-- rg-c (c1) --cd 1 (c1|d1)-- rg-d (d1)
//	     \______________________ac 20 (a2|c1)_______________________/
//
// From rg-a: rg-b costs 10, rg-c 15 (via rg-b), rg-d 16.
const defaultConnectors = `
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
  - {name: bc, between: [rg-b, rg-c], cost: 5, bridgeheads: {rg-b: [b1], rg-c: [c1]}}
  - {name: ac, between: [rg-a, rg-c], cost: 20, bridgeheads: {rg-a: [a2], rg-c: [c1]}}
  - {name: cd, between: [rg-c, rg-d], cost: 1, bridgeheads: {rg-c: [c1], rg-d: [d1]}}
`

// serverRG is the fixture's fixed server set.
var serverRG = map[string]string{"a1": "rg-a", "a2": "rg-a", "b1": "rg-b", "b2": "rg-b", "c1": "rg-c", "d1": "rg-d"}

// spec describes one test organization. Stores maps a server to its store
// list as YAML flow items ("{name: p, kind: public, hierarchy: PF, created: ...}").
type spec struct {
	Routing    string // YAML flow mapping, default "{store_min_age: 48h}"
	Mode       string
	Connectors string // YAML list items, default defaultConnectors
	Stores     map[string][]string
	Folders    string // YAML list items
	Users      string // YAML list items
	Outbound   string // YAML list items of outbound connectors
}

// pub is a public store of hierarchy PF created at c.
func pub(name, created string) string {
	return fmt.Sprintf("{name: %s, kind: public, hierarchy: PF, created: %q}", name, created)
}

// unsynced is a public store whose hierarchy copy is incomplete (R12).
func unsynced(name, created string) string {
	return fmt.Sprintf("{name: %s, kind: public, hierarchy: PF, created: %q, hierarchy_synced: false}", name, created)
}

func (s spec) yaml() string {
	var b strings.Builder
	mode := s.Mode
	if mode == "" {
		mode = "mixed"
	}
	rt := s.Routing
	if rt == "" {
		rt = "{store_min_age: 48h}"
	}
	fmt.Fprintf(&b, "organization: T\nmode: %s\n", mode)
	b.WriteString("domains: [x.example, {name: cs.example, case_sensitive_local_part: true}]\n")
	fmt.Fprintf(&b, "routing: %s\n", rt)
	b.WriteString("sites: [{name: s}]\n")
	b.WriteString("routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}, {name: rg-d}]\n")
	b.WriteString("hierarchies: [{name: PF, tlh: mapi}, {name: App, tlh: application}]\n")
	conns := s.Connectors
	if conns == "" {
		conns = defaultConnectors
	}
	b.WriteString("connectors:" + conns)
	if s.Outbound != "" {
		b.WriteString("outbound:" + s.Outbound + "\n")
	}
	b.WriteString("servers:\n")
	names := make([]string, 0, len(serverRG))
	for n := range serverRG {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    site: s\n    routing_group: %s\n    listen: {smtp: \"127.0.0.1:0\"}\n", n, serverRG[n])
		stores := append([]string{fmt.Sprintf("{name: %s-mbx, kind: mailbox, created: %q}", n, jan)}, s.Stores[n]...)
		b.WriteString("    stores:\n")
		for _, st := range stores {
			b.WriteString("      - " + st + "\n")
		}
	}
	if s.Folders != "" {
		b.WriteString("folders:" + s.Folders + "\n")
	}
	if s.Users != "" {
		b.WriteString("users:" + s.Users + "\n")
	}
	return b.String()
}

// env is a built organization.
type env struct {
	org   *config.Org
	dir   *directory.Directory
	table *linkstate.Table
}

func build(t testing.TB, s spec) *env {
	t.Helper()
	src := s.yaml()
	org, err := config.Parse([]byte(src), "test.yaml", ".")
	if err != nil {
		t.Fatalf("config:\n%s\n%v", src, err)
	}
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	table, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatalf("linkstate: %v", err)
	}
	return &env{org: org, dir: dir, table: table}
}

func (e *env) params() routing.Params {
	return routing.Params{MinAge: e.org.Routing.EffectiveMinAge(), HopLimit: e.org.Routing.HopLimit, Spread: e.org.Routing.Spread}
}

// decide routes rcpt as server at, anonymous sender, at the fixed time.
func (e *env) decide(at, rcpt string) routing.Decision {
	return e.decideIn(routing.Input{At: at, Recipient: rcpt})
}

func (e *env) decideIn(in routing.Input) routing.Decision {
	if in.Now.IsZero() {
		in.Now = now
	}
	if in.MessageID == "" {
		in.MessageID = "<m1@x.example>"
	}
	return routing.Decide(e.dir.Snapshot(), e.table.Graph(), e.params(), in)
}

func (e *env) down(t testing.TB, connectors ...string) {
	t.Helper()
	for _, c := range connectors {
		if _, err := e.table.SetUp(c, false, "test", now); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) serverDown(t testing.TB, servers ...string) {
	t.Helper()
	for _, s := range servers {
		if _, err := e.table.SetServerDown(s, true); err != nil {
			t.Fatal(err)
		}
	}
}

// explain renders a decision for failure messages.
func explain(d routing.Decision) string {
	var b strings.Builder
	d.WriteText(&b)
	return b.String()
}

// wantDeliver checks a Deliver outcome to store on its server.
func wantDeliver(t *testing.T, d routing.Decision, store string) {
	t.Helper()
	if d.Outcome != routing.Deliver || d.Store != store {
		t.Fatalf("want deliver to %s, got %s %s %s\n%s", store, d.Outcome, d.Store, d.Code, explain(d))
	}
}

// wantOutcome checks a Queue or NDR outcome and its status code.
func wantOutcome(t *testing.T, d routing.Decision, o routing.Outcome, code string) {
	t.Helper()
	if d.Outcome != o || d.Code != code {
		t.Fatalf("want %s %s, got %s %s %s\n%s", o, code, d.Outcome, d.Code, d.Reason, explain(d))
	}
}

func wantStep1(t *testing.T, d routing.Decision, store, rule string) {
	t.Helper()
	if d.Step1 == nil || d.Step1.Store != store || d.Step1.Rule != rule {
		t.Fatalf("want step 1 %s by rule %s, got %+v\n%s", store, rule, d.Step1, explain(d))
	}
}

func wantRoute(t *testing.T, d routing.Decision, route ...string) {
	t.Helper()
	if strings.Join(d.Route, ">") != strings.Join(route, ">") {
		t.Fatalf("want route %v, got %v\n%s", route, d.Route, explain(d))
	}
}

// folder is a folder of PF with an address and replicas.
func folder(path, addr string, replicas ...string) string {
	return fmt.Sprintf("\n  - {path: %s, hierarchy: PF, addresses: [%s], replicas: [%s]}", path, addr, strings.Join(replicas, ", "))
}

// storeName extracts the name from a pub/unsynced store item.
func storeName(item string) string {
	rest := strings.TrimPrefix(item, "{name: ")
	return rest[:strings.IndexByte(rest, ',')]
}

package routing_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/examples"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

// sameDecision reports how Route's answer differs from Decide's in what
// Route promises to keep (everything but the explanation lists). Both run
// one implementation now, Decide with the explanation recorder on; this
// guards that recording never changes the decision.
func sameDecision(full, fast routing.Decision) string {
	var diffs []string
	eq := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			diffs = append(diffs, fmt.Sprintf("%s: Decide %v, Route %v", what, a, b))
		}
	}
	eq("outcome", full.Outcome, fast.Outcome)
	eq("code", full.Code, fast.Code)
	eq("reason", full.Reason, fast.Reason)
	eq("store", full.Store, fast.Store)
	eq("server", full.Server, fast.Server)
	eq("route", full.Route, fast.Route)
	eq("cost", full.Cost, fast.Cost)
	eq("excluded", full.Excluded, fast.Excluded)
	eq("hierarchy server", full.HierarchyServer, fast.HierarchyServer)
	eq("user", full.User, fast.User)
	eq("folder", full.Folder, fast.Folder)
	eq("hierarchy", full.Hierarchy, fast.Hierarchy)
	eq("linkstate version", full.LinkStateVersion, fast.LinkStateVersion)
	s1 := func(s *routing.Step1) string {
		if s == nil {
			return "nil"
		}
		return fmt.Sprintf("%s on %s by %s at %s min %s young %v", s.Store, s.Server, s.Rule, s.At, s.MinAge, s.UsedYoung)
	}
	eq("step 1", s1(full.Step1), s1(fast.Step1))
	eq("attempts", len(full.Attempts), len(fast.Attempts))
	for i := range min(len(full.Attempts), len(fast.Attempts)) {
		eq(fmt.Sprint("attempt ", i), s1(&full.Attempts[i]), s1(&fast.Attempts[i]))
	}
	s2 := func(s *routing.Step2) string {
		if s == nil {
			return "nil"
		}
		return fmt.Sprintf("%s on %s by %s cost %d path %v", s.Store, s.Server, s.Rule, s.Cost, s.Path)
	}
	eq("step 2", s2(full.Step2), s2(fast.Step2))
	return strings.Join(diffs, "\n")
}

// tally counts what the compared decisions covered, so a generator that
// stops producing some case fails rather than passing vacuously.
type tally map[string]int

func (c tally) add(d routing.Decision) {
	c[string(d.Outcome)]++
	if len(d.Attempts) > 0 {
		c["rerouted"]++
	}
	if d.Step1 != nil && d.Step1.UsedYoung {
		c["young"]++
	}
	if d.Step2 != nil && d.Step2.Rule != "" {
		c["step2 "+d.Step2.Rule]++
	}
	if d.Step1 != nil && d.Step1.Rule != "" {
		c["step1 "+d.Step1.Rule]++
	}
}

func (c tally) need(t *testing.T, keys ...string) {
	t.Helper()
	t.Logf("covered: %v", map[string]int(c))
	for _, k := range keys {
		if c[k] == 0 {
			t.Errorf("degenerate generator: no %q decision", k)
		}
	}
}

// compare runs Decide and Route (or Continue and RouteContinue) on one
// input and fails on any difference.
func compare(t *testing.T, c tally, snap *directory.Snapshot, g *linkstate.Graph, p routing.Params, in routing.Input, carried, ctx string) {
	t.Helper()
	var full, fast routing.Decision
	if carried != "" {
		full = routing.Continue(snap, g, p, in, carried)
		fast = routing.RouteContinue(snap, g, p, in, carried)
	} else {
		full = routing.Decide(snap, g, p, in)
		fast = routing.Route(snap, g, p, in)
	}
	c.add(full)
	if fast.Step1 != nil && fast.Step1.Skipped != nil || fast.Step2 != nil && (fast.Step2.Considered != nil || fast.Step2.Connectors != nil) {
		t.Fatalf("Route recorded an explanation (the recorder is off): %+v %+v", fast.Step1, fast.Step2)
	}
	if full.Step1 != nil && full.Step1.Skipped == nil || full.Step2 != nil && full.Step2.Considered == nil {
		t.Fatalf("Decide left an explanation list nil (JSON null, not []): %+v %+v", full.Step1, full.Step2)
	}
	if diff := sameDecision(full, fast); diff != "" {
		t.Fatalf("Route differs from Decide (carried %q, input %+v):\n%s\n%s\n%s", carried, in, diff, explain(full), ctx)
	}
}

// linkChange makes one random link-state change: a connector's cost or
// state, or a server down or up (R9, R10).
func linkChange(t *testing.T, r *rand.Rand, table *linkstate.Table, servers []string) {
	t.Helper()
	conns := table.Connectors()
	var err error
	switch k := r.IntN(3); {
	case k == 0 && len(conns) > 0:
		_, err = table.SetCost(conns[r.IntN(len(conns))].Name, 1+r.IntN(100), "test", now)
	case k == 1 && len(conns) > 0:
		_, err = table.SetUp(conns[r.IntN(len(conns))].Name, r.IntN(3) != 0, "test", now)
	default:
		_, err = table.SetServerDown(servers[r.IntN(len(servers))], r.IntN(4) == 0)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// randomInput is a recipient at a server with random routing state: the
// clock (so stores fall on either side of store_min_age, R6), excluded
// stores (R12), sender (R17) and message id (R9 spread).
func randomInput(r *rand.Rand, servers, addrs, stores []string) routing.Input {
	in := routing.Input{
		At: servers[r.IntN(len(servers))], Recipient: addrs[r.IntN(len(addrs))],
		MessageID: fmt.Sprintf("<%d@x>", r.IntN(1000)), Hops: r.IntN(3),
		Now: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(250*24)) * time.Hour),
	}
	if r.IntN(4) == 0 {
		in.Excluded = []string{stores[r.IntN(len(stores))]}
	}
	if r.IntN(5) == 0 {
		in.SenderUser = "alice"
	}
	if r.IntN(8) == 0 {
		in.Size = 1 << 30
	}
	return in
}

func publicStores(snap *directory.Snapshot) []string {
	var out []string
	for _, st := range snap.Stores() {
		if st.Kind == config.StorePublic {
			out = append(out, st.Name)
		}
	}
	return out
}

// R1–R17: on the property test's random topologies, with random link-state
// and directory changes in between, Route (the queue manager's call,
// recorder off) decides exactly what Decide (recorder on) decides: outcome, code, reason, stores,
// servers, route and cost.
func TestRouteMatchesDecideRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20251125, 7))
	cov := tally{}
	orgs, per := 150, 60
	if testing.Short() {
		orgs = 40
	}
	for it := 0; it < orgs; it++ {
		o := genRandOrg(r)
		org, err := config.Parse([]byte(o.yaml), "rand.yaml", ".")
		if err != nil {
			t.Fatal(err)
		}
		dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		table, err := linkstate.FromConfig(org)
		if err != nil {
			t.Fatal(err)
		}
		var servers []string
		for _, l := range o.servers {
			servers = append(servers, l...)
		}
		for s := range o.down {
			if _, err := table.SetServerDown(s, true); err != nil {
				t.Fatal(err)
			}
		}
		stores := publicStores(dir.Snapshot())
		addrs := []string{"f@x.example", "F@X.example", "nobody@x.example", "f@elsewhere.example", "bad"}
		for i := 0; i < per; i++ {
			switch r.IntN(6) {
			case 0:
				linkChange(t, r, table, servers)
			case 1: // a store's hierarchy copy incomplete, or complete again (R12)
				if err := dir.SetSynced(stores[r.IntN(len(stores))], r.IntN(2) == 0); err != nil {
					t.Fatal(err)
				}
			}
			p := routing.Params{HopLimit: 30, Spread: r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				p.MinAge = 48 * time.Hour
			}
			in := randomInput(r, servers, addrs, stores)
			carried := ""
			if r.IntN(4) == 0 {
				carried = stores[r.IntN(len(stores))]
			}
			compare(t, cov, dir.Snapshot(), table.Graph(), p, in, carried, fmt.Sprintf("org %d step %d\n%s", it, i, o.yaml))
		}
	}
	cov.need(t, "deliver", "queue", "ndr", "rerouted", "young", "step1 local", "step1 routing-group", "step1 first", "step2 local", "step2 routing-group", "step2 lowest-cost", "step1 carried")
}

// R1–R17 on the contoso demo: every address (folders, aliases, users, a
// disabled folder, unknown and foreign ones) at every server, under random
// link-state changes, store additions and sync states.
func TestRouteMatchesDecideContoso(t *testing.T) {
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	table, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	var servers, addrs []string
	for _, s := range org.Servers {
		servers = append(servers, s.Name)
	}
	for _, f := range org.Folders {
		addrs = append(addrs, f.Addresses...)
		if f.Alias != "" {
			addrs = append(addrs, f.Alias+"@contoso.example")
		}
	}
	for _, u := range org.Users {
		addrs = append(addrs, u.Addresses...)
	}
	addrs = append(addrs, "SALES@Contoso.Example", "nobody@contoso.example", "x@example.org", "@contoso.example")
	r := rand.New(rand.NewPCG(20251125, 8))
	cov := tally{}
	p := routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit, Spread: org.Routing.Spread}
	added := 0
	iters := 4000
	if testing.Short() {
		iters = 1000
	}
	for i := 0; i < iters; i++ {
		stores := publicStores(dir.Snapshot())
		switch r.IntN(10) {
		case 0, 1:
			linkChange(t, r, table, servers)
		case 2:
			if err := dir.SetSynced(stores[r.IntN(len(stores))], r.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
		case 3:
			if added < 6 { // a new store, young at some clocks (O1, R6)
				added++
				srv := servers[r.IntN(len(servers))]
				name := fmt.Sprintf("new%d-%s", added, srv)
				if _, err := dir.AddStore(directory.Store{Name: name, Kind: config.StorePublic, Server: srv, Hierarchy: "Public Folders",
					Created: time.Date(2025, 6, r.IntN(30)+1, 0, 0, 0, 0, time.UTC)}); err != nil {
					t.Fatal(err)
				}
				if err := dir.AddReplica("Public Folders", "/Sales", name); err != nil {
					t.Fatal(err)
				}
			}
		}
		pp := p
		pp.Spread = r.IntN(2) == 0
		in := randomInput(r, servers, addrs, stores)
		carried := ""
		if r.IntN(4) == 0 {
			carried = stores[r.IntN(len(stores))]
		}
		if r.IntN(20) == 0 {
			in.Visits = []envelope.Visit{{Server: in.At}} // R14: back before any decision
		}
		compare(t, cov, dir.Snapshot(), table.Graph(), pp, in, carried, fmt.Sprint("step ", i))
	}
	cov.need(t, "deliver", "queue", "ndr", "rerouted", "step1 local", "step1 routing-group", "step1 first", "step2 local", "step2 lowest-cost", "step1 carried")
}

// Route fills what the queue manager reads; check one delivery by hand so
// a shared mistake in both paths would still show.
func TestRouteContosoDelivery(t *testing.T) {
	snap, g, p := contosoAt(t)
	d := routing.Route(snap, g, p, routing.Input{At: "ex2", Recipient: "sales@contoso.example", Now: now, MessageID: "m"})
	if d.Outcome != routing.Deliver || d.Step1 == nil || d.Step2 == nil || d.Store == "" || !slices.Equal(d.Route[:1], []string{"ex2"}) || d.Route[len(d.Route)-1] != d.Server {
		t.Fatalf("unexpected decision %+v", d)
	}
}

// The explanation recorder off costs nothing: Route over a decision whose
// explanation has skipped hierarchy stores and considered replicas
// allocates less than Decide, and no more than with the explanation empty
// would need (the Step1/Step2 block, the route, the excluded copy).
func TestRouteRecorderOffAllocatesNothingForExplanation(t *testing.T) {
	snap, g, p := contosoAt(t)
	in := routing.Input{At: "ex2", Recipient: "sales@contoso.example", Now: now, MessageID: "m"}
	full := routing.Decide(snap, g, p, in)
	if full.Outcome != routing.Deliver || len(full.Step1.Skipped)+len(full.Step2.Considered) == 0 {
		t.Fatalf("want a delivery with an explanation to record, got %s", explain(full))
	}
	routeAllocs := testing.AllocsPerRun(50, func() { routing.Route(snap, g, p, in) })
	decideAllocs := testing.AllocsPerRun(50, func() { routing.Decide(snap, g, p, in) })
	if routeAllocs >= decideAllocs {
		t.Fatalf("Route allocates %v, Decide %v: the recorder off should save the explanation's allocations", routeAllocs, decideAllocs)
	}
	if routeAllocs > 3 {
		t.Fatalf("Route allocates %v per decision, want at most 3 (steps, route; nothing for the explanation)", routeAllocs)
	}
	t.Logf("allocations per decision: Route %v, Decide %v", routeAllocs, decideAllocs)
}

// contosoAt is the contoso demo's directory snapshot, link-state graph and
// routing tunables.
func contosoAt(t *testing.T) (*directory.Snapshot, *linkstate.Graph, routing.Params) {
	t.Helper()
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	table, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	return dir.Snapshot(), table.Graph(), routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit}
}

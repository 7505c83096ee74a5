package linkstate_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pfrouter/bench/orggen"
	"pfrouter/linkstate"
)

var t0 = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// diamond:
//
//	A --ab 1-- B --bd 1-- D
//	 \--ac 1-- C --cd 5--/
//	A --ad 10-- D, E isolated
func diamond(t *testing.T) *linkstate.Table {
	t.Helper()
	tb, err := linkstate.New([]string{"E"}, []linkstate.Server{
		{Name: "a1", RoutingGroup: "A"}, {Name: "a2", RoutingGroup: "A"},
		{Name: "b1", RoutingGroup: "B"}, {Name: "b2", RoutingGroup: "B"},
		{Name: "c1", RoutingGroup: "C"}, {Name: "d1", RoutingGroup: "D"}, {Name: "e1", RoutingGroup: "E"},
	}, []linkstate.Connector{
		{Name: "ab", A: "A", B: "B", Cost: 1, Up: true, BridgeheadsA: []string{"a1"}, BridgeheadsB: []string{"b1", "b2"}},
		{Name: "bd", A: "B", B: "D", Cost: 1, Up: true, BridgeheadsA: []string{"b2"}, BridgeheadsB: []string{"d1"}},
		{Name: "ac", A: "A", B: "C", Cost: 1, Up: true},
		{Name: "cd", A: "C", B: "D", Cost: 5, Up: true},
		{Name: "ad", A: "A", B: "D", Cost: 10, Up: true, BridgeheadsA: []string{"a2"}, BridgeheadsB: []string{"d1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func cost(t *testing.T, g *linkstate.Graph, a, b string) (int, int, bool) {
	t.Helper()
	return g.RGCost(a, b)
}

// R9: lowest-cost paths over up connectors, with hop counts.
func TestDijkstra(t *testing.T) {
	g := diamond(t).Graph()
	cases := []struct {
		from, to   string
		cost, hops int
		ok         bool
	}{
		{"A", "A", 0, 0, true},
		{"A", "B", 1, 1, true},
		{"A", "C", 1, 1, true},
		{"A", "D", 2, 2, true}, // A-B-D beats A-C-D (6) and A-D (10)
		{"C", "D", 3, 3, true}, // C-A-B-D (3) beats C-D (5)
		{"D", "C", 3, 3, true},
		{"A", "E", 0, 0, false},
		{"A", "nowhere", 0, 0, false},
	}
	for _, c := range cases {
		cst, hops, ok := cost(t, g, c.from, c.to)
		if cst != c.cost || hops != c.hops || ok != c.ok {
			t.Errorf("%s->%s = %d/%d/%v, want %d/%d/%v", c.from, c.to, cst, hops, ok, c.cost, c.hops, c.ok)
		}
	}
}

// R9: equal costs break on fewer hops.
func TestDijkstraTieFewerHops(t *testing.T) {
	tb, err := linkstate.New(nil, nil, []linkstate.Connector{
		{Name: "x1", A: "A", B: "B", Cost: 2, Up: true},
		{Name: "x2", A: "B", B: "C", Cost: 2, Up: true},
		{Name: "x3", A: "A", B: "C", Cost: 4, Up: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, h, ok := tb.Graph().RGCost("A", "C"); c != 4 || h != 1 || !ok {
		t.Fatalf("A->C = %d/%d/%v, want 4/1", c, h, ok)
	}
}

// R13: server paths go bridgehead to bridgehead; Path's cost is the sum of
// the connectors it lists.
func TestPathBridgeheads(t *testing.T) {
	tb := diamond(t)
	g := tb.Graph()
	p, ok := g.Path("a2", "d1")
	if !ok {
		t.Fatal("no path")
	}
	if got := strings.Join(p.Servers, ">"); got != "a2>a1>b1>b2>d1" {
		t.Fatalf("servers %s", got)
	}
	if strings.Join(p.Connectors, ",") != "ab,bd" || p.Cost != 2 {
		t.Fatalf("connectors %v cost %d", p.Connectors, p.Cost)
	}
	if hop, ok := g.NextHop("a2", "d1"); !ok || hop != "a1" {
		t.Fatalf("next hop %s %v", hop, ok)
	}
	// Within a routing group: direct.
	if p, ok := g.Path("a1", "a2"); !ok || strings.Join(p.Servers, ">") != "a1>a2" || p.Cost != 0 {
		t.Fatalf("same RG path %+v", p)
	}
	if p, ok := g.Path("a1", "a1"); !ok || len(p.Servers) != 1 {
		t.Fatalf("self path %+v", p)
	}
	if _, ok := g.Path("a1", "e1"); ok {
		t.Fatal("path to isolated routing group")
	}
	if _, ok := g.NextHop("a1", "e1"); ok {
		t.Fatal("next hop to isolated routing group")
	}
}

// R13: a one-way connector is used from A to B only.
func TestOneWay(t *testing.T) {
	tb, err := linkstate.New(nil, nil, []linkstate.Connector{
		{Name: "ab", A: "A", B: "B", Cost: 1, Up: true, OneWay: true},
		{Name: "bc", A: "B", B: "C", Cost: 1, Up: true},
		{Name: "ca", A: "C", B: "A", Cost: 7, Up: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := tb.Graph()
	if c, _, _ := g.RGCost("A", "B"); c != 1 {
		t.Fatalf("A->B %d", c)
	}
	if c, _, _ := g.RGCost("B", "A"); c != 8 {
		t.Fatalf("B->A %d, want 8 (around by C)", c)
	}
}

// R10, R13b: every change bumps the version; a no-op change does not.
func TestVersionBumps(t *testing.T) {
	tb := diamond(t)
	v := tb.Version()
	step := func(name string, got uint64, err error, bump bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := v
		if bump {
			want = v + 1
		}
		if got != want || tb.Version() != want || tb.Graph().Version() != want {
			t.Fatalf("%s: version %d (table %d), want %d", name, got, tb.Version(), want)
		}
		v = want
	}
	n, err := tb.SetCost("ab", 3, "admin", t0)
	step("SetCost", n, err, true)
	n, err = tb.SetCost("ab", 3, "admin", t0)
	step("SetCost same", n, err, false)
	n, err = tb.SetUp("ab", false, "queue", t0)
	step("SetUp down", n, err, true)
	n, err = tb.SetUp("ab", false, "queue", t0)
	step("SetUp down again", n, err, false)
	n, err = tb.SetUp("ab", true, "queue", t0)
	step("SetUp up", n, err, true)
	n, err = tb.SetServerDown("b1", true)
	step("SetServerDown", n, err, true)
	n, err = tb.SetServerDown("b1", true)
	step("SetServerDown same", n, err, false)
	n, err = tb.SetServerDown("b1", false)
	step("SetServerDown up", n, err, true)
	n, err = tb.AddConnector(linkstate.Connector{Name: "ce", A: "C", B: "E", Cost: 4, Up: true})
	step("AddConnector", n, err, true)
	step("AddServer", tb.AddServer(linkstate.Server{Name: "e2", RoutingGroup: "E"}), nil, true)

	c, ok := tb.Connector("ab")
	if !ok || c.Cost != 3 || !c.Up || c.ChangedBy != "queue" || !c.ChangedAt.Equal(t0) {
		t.Fatalf("connector record %+v", c)
	}
	if cst, _, ok := tb.Graph().RGCost("A", "E"); !ok || cst != 5 {
		t.Fatalf("A->E after AddConnector = %d %v", cst, ok)
	}
}

// Costs are 1..100; unknown names are ErrUnknown; nothing changes on error.
func TestValidation(t *testing.T) {
	tb := diamond(t)
	v := tb.Version()
	for _, c := range []int{0, -1, 101, 1000} {
		if _, err := tb.SetCost("ab", c, "x", t0); err == nil {
			t.Errorf("cost %d accepted", c)
		}
	}
	for _, c := range []int{2, 100} {
		if _, err := tb.SetCost("ab", c, "x", t0); err != nil {
			t.Errorf("cost %d refused: %v", c, err)
		}
	}
	v += 2
	if _, err := tb.SetCost("nope", 5, "x", t0); !errors.Is(err, linkstate.ErrUnknown) {
		t.Errorf("unknown connector: %v", err)
	}
	if _, err := tb.SetUp("nope", true, "x", t0); !errors.Is(err, linkstate.ErrUnknown) {
		t.Errorf("unknown connector: %v", err)
	}
	if _, err := tb.SetServerDown("nope", true); !errors.Is(err, linkstate.ErrUnknown) {
		t.Errorf("unknown server: %v", err)
	}
	if _, err := tb.AddConnector(linkstate.Connector{Name: "loop", A: "A", B: "A", Cost: 1}); err == nil {
		t.Error("self-loop connector accepted")
	}
	if tb.Version() != v {
		t.Fatalf("version %d after refused changes, want %d", tb.Version(), v)
	}
	if _, err := linkstate.New(nil, nil, []linkstate.Connector{{Name: "x", A: "A", B: "B", Cost: 1}, {Name: "x", A: "A", B: "C", Cost: 1}}); err == nil {
		t.Error("duplicate connector accepted")
	}
	if _, err := linkstate.New(nil, []linkstate.Server{{Name: "s"}, {Name: "s"}}, nil); err == nil {
		t.Error("duplicate server accepted")
	}
}

// R10: a connector whose bridgeheads on one side are all down carries
// nothing; with another live bridgehead on that side it still does, through
// that bridgehead.
func TestBridgeheadDown(t *testing.T) {
	tb := diamond(t)
	if _, err := tb.SetServerDown("b1", true); err != nil {
		t.Fatal(err)
	}
	g := tb.Graph()
	p, ok := g.Path("a1", "b2")
	if !ok || strings.Join(p.Servers, ">") != "a1>b2" || strings.Join(p.Connectors, ",") != "ab" {
		t.Fatalf("with b2 alive, ab goes through b2: %+v %v", p, ok)
	}
	if _, err := tb.SetServerDown("b2", true); err != nil {
		t.Fatal(err)
	}
	g = tb.Graph()
	if c, _, ok := g.RGCost("A", "B"); ok {
		t.Fatalf("A->B still reachable at cost %d with every rg-B bridgehead of ab down", c)
	}
	// A->D now: bd's B-side bridgehead b2 is down too, so A-C-D (6) or A-D (10).
	if c, _, ok := g.RGCost("A", "D"); !ok || c != 6 {
		t.Fatalf("A->D = %d %v, want 6", c, ok)
	}
	// A server that is down is not reachable, even in the same routing group.
	if g.Reachable("a1", "b2") {
		t.Fatal("down server reachable")
	}
	if _, err := tb.SetServerDown("a2", true); err != nil {
		t.Fatal(err)
	}
	if tb.Graph().Reachable("a1", "a2") {
		t.Fatal("down server in the same routing group reachable")
	}
	if !tb.Graph().Reachable("a2", "a2") {
		t.Fatal("a server always reaches itself")
	}
}

// A Graph is immutable: a graph taken before a change keeps answering for
// the old state, including trees it had not computed yet.
func TestGraphSnapshotImmutable(t *testing.T) {
	tb := diamond(t)
	old := tb.Graph()
	if c, _, _ := old.RGCost("A", "D"); c != 2 {
		t.Fatalf("A->D %d", c)
	}
	if _, err := tb.SetCost("ab", 50, "admin", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.SetUp("ac", false, "admin", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.SetServerDown("d1", true); err != nil {
		t.Fatal(err)
	}
	cur := tb.Graph()
	if c, _, _ := old.RGCost("A", "D"); c != 2 {
		t.Fatalf("old graph A->D changed to %d", c)
	}
	// Source C was never queried on old: it is computed lazily, still from
	// the old state.
	if c, _, ok := old.RGCost("C", "B"); !ok || c != 2 {
		t.Fatalf("old graph C->B = %d %v, want 2", c, ok)
	}
	if old.ServerDown("d1") || !cur.ServerDown("d1") {
		t.Fatal("server state leaked between graphs")
	}
	// ad and bd lost their only D-side bridgehead; ac is down: only ab (50).
	if c, _, ok := cur.RGCost("A", "B"); !ok || c != 50 {
		t.Fatalf("current A->B = %d %v, want 50", c, ok)
	}
	if c, _, ok := cur.RGCost("A", "D"); ok {
		t.Fatalf("current A->D = %d, want unreachable", c)
	}
	if old.Version() >= cur.Version() {
		t.Fatal("versions not increasing")
	}
}

// Readers never lock: concurrent queries and changes are race-free (run
// with -race).
func TestConcurrentReaders(t *testing.T) {
	tb := diamond(t)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				g := tb.Graph()
				g.RGCost("A", "D")
				g.Path("a2", "d1")
			}
		}()
	}
	for j := 0; j < 50; j++ {
		if _, err := tb.SetCost("ab", 1+j%10, "x", t0); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// FromConfig is covered by the routing tests (via config.Parse); here the
// copy semantics: changing the caller's slices after New does not change
// the table.
func TestNewCopiesInput(t *testing.T) {
	bh := []string{"a1"}
	tb, err := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}, {Name: "b1", RoutingGroup: "B"}},
		[]linkstate.Connector{{Name: "ab", A: "A", B: "B", Cost: 1, Up: true, BridgeheadsA: bh}})
	if err != nil {
		t.Fatal(err)
	}
	bh[0] = "zz"
	c, _ := tb.Connector("ab")
	if c.BridgeheadsA[0] != "a1" {
		t.Fatal("bridgeheads aliased")
	}
	if len(tb.Servers()) != 2 || len(tb.Connectors()) != 1 {
		t.Fatal("listing")
	}
}

// A server without a routing group is not routable (it used to land in the
// alphabetically first routing group), and AddServer moves a server.
func TestServerWithoutRoutingGroup(t *testing.T) {
	tb, err := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}, {Name: "lost"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := tb.Graph()
	if rg, ok := g.RoutingGroupOf("lost"); ok {
		t.Fatalf("server without routing group is in %q", rg)
	}
	if g.Reachable("a1", "lost") {
		t.Fatal("server without routing group reachable")
	}
	tb.AddServer(linkstate.Server{Name: "lost", RoutingGroup: "A"})
	if !tb.Graph().Reachable("a1", "lost") {
		t.Fatal("server added to A not reachable from A")
	}
	tb.AddServer(linkstate.Server{Name: "b1", RoutingGroup: "B", Down: true})
	if !tb.Graph().ServerDown("b1") {
		t.Fatal("server added down is not down")
	}
	// Added down without a cause: down by config, which an operator's
	// "up" (maintenance) does not clear.
	if _, err := tb.SetServerDown("b1", false); err != nil || !tb.Graph().ServerDown("b1") {
		t.Fatalf("maintenance cleared brought up a server down by config: %v", err)
	}
	if _, err := tb.SetServerCause("b1", linkstate.CauseConfig, false); err != nil || tb.Graph().ServerDown("b1") {
		t.Fatalf("server back up: %v", err)
	}
}

// R13b, issue 10 item 3: each writer of "down" has its own cause; a server
// or connector is down while any cause holds, and clearing one cause
// leaves the others (a prober does not bring back a server an operator put
// in maintenance). Every change of the set bumps the version, a no-op
// does not.
func TestDownCauses(t *testing.T) {
	type step struct {
		cause linkstate.Cause
		on    bool
		down  bool             // the server afterwards
		want  linkstate.Causes // its causes afterwards
		bump  bool
	}
	const (
		hop   = linkstate.CauseHopHealth
		maint = linkstate.CauseMaintenance
		death = linkstate.CauseMemberDeath
	)
	cases := []struct {
		name  string
		steps []step
	}{
		{"prober clears only its own cause", []step{
			{maint, true, true, linkstate.Causes{maint}, true},
			{hop, true, true, linkstate.Causes{hop, maint}, true},
			{hop, false, true, linkstate.Causes{maint}, true},
			{maint, false, false, nil, true},
		}},
		{"member death and hop health", []step{
			{death, true, true, linkstate.Causes{death}, true},
			{hop, true, true, linkstate.Causes{hop, death}, true},
			{death, false, true, linkstate.Causes{hop}, true},
			{hop, false, false, nil, true},
		}},
		{"repeats change nothing", []step{
			{hop, true, true, linkstate.Causes{hop}, true},
			{hop, true, true, linkstate.Causes{hop}, false},
			{maint, false, true, linkstate.Causes{hop}, false},
			{hop, false, false, nil, true},
			{hop, false, false, nil, false},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, err := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}, {Name: "b1", RoutingGroup: "A"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range c.steps {
				before := tb.Version()
				v, err := tb.SetServerCause("b1", st.cause, st.on)
				if err != nil {
					t.Fatal(err)
				}
				if (v != before) != st.bump {
					t.Errorf("step %d: version %d -> %d, want a bump %t", i, before, v, st.bump)
				}
				g := tb.Graph()
				if g.ServerDown("b1") != st.down || g.Reachable("a1", "b1") == st.down {
					t.Errorf("step %d: down %t reachable %t, want down %t", i, g.ServerDown("b1"), g.Reachable("a1", "b1"), st.down)
				}
				srv := tb.Servers()[1]
				if srv.Down != st.down || fmt.Sprint(srv.Causes) != fmt.Sprint(st.want) {
					t.Errorf("step %d: server %+v, want down %t causes %v", i, srv, st.down, st.want)
				}
			}
		})
	}
	if _, err := (&linkstate.Table{}).SetServerCause("x", hop, true); err == nil {
		t.Error("unknown server accepted")
	}
}

// Connectors: config (state: down in the file) and maintenance (the
// operator) are separate; the operator's "up" does not override the file.
func TestConnectorCauses(t *testing.T) {
	tb, err := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}, {Name: "b1", RoutingGroup: "B"}},
		[]linkstate.Connector{{Name: "ab", A: "A", B: "B", Cost: 1, Up: false}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	check := func(what string, up bool, causes linkstate.Causes) {
		t.Helper()
		c, _ := tb.Connector("ab")
		if c.Up != up || fmt.Sprint(c.Causes) != fmt.Sprint(causes) || tb.Graph().Reachable("a1", "b1") != up {
			t.Errorf("%s: connector %+v reachable %t, want up %t causes %v", what, c, tb.Graph().Reachable("a1", "b1"), up, causes)
		}
	}
	check("configured down", false, linkstate.Causes{linkstate.CauseConfig})
	tb.SetUp("ab", false, "op", at)
	check("and in maintenance", false, linkstate.Causes{linkstate.CauseConfig, linkstate.CauseMaintenance})
	tb.SetUp("ab", true, "op", at)
	check("maintenance over", false, linkstate.Causes{linkstate.CauseConfig})
	tb.SetConnectorCause("ab", linkstate.CauseConfig, false, "reload", at)
	check("config says up", true, nil)
	if c, _ := tb.Connector("ab"); c.ChangedBy != "reload" || !c.ChangedAt.Equal(at) {
		t.Errorf("changed by %q at %v", c.ChangedBy, c.ChangedAt)
	}
}

// Issue 10 item 6: an outbound connector is a link-state entry with cost,
// state and causes like any connector, but no edge: paths do not change,
// Graph.Outbound lists it as of its version, and Replace keeps it.
func TestOutboundConnectorEntries(t *testing.T) {
	tb, err := linkstate.New(nil, []linkstate.Server{{Name: "a1", RoutingGroup: "A"}, {Name: "b1", RoutingGroup: "B"}},
		[]linkstate.Connector{
			{Name: "ab", A: "A", B: "B", Cost: 3, Up: true},
			{Name: "internet", Outbound: true, Cost: 5, Up: true, AddressSpaces: []string{"*"}, Sources: []string{"b1"}},
		})
	if err != nil {
		t.Fatal(err)
	}
	g := tb.Graph()
	if p, ok := g.Path("a1", "b1"); !ok || strings.Join(p.Connectors, ",") != "ab" || p.Cost != 3 {
		t.Fatalf("path a1->b1 %+v, want over ab only", p)
	}
	if _, ok := g.RoutingGroupOf(""); ok {
		t.Error("an outbound connector added a routing group")
	}
	ob := g.Outbound()
	if len(ob) != 1 || ob[0].Name != "internet" || !ob[0].Up || ob[0].Cost != 5 || ob[0].Sources[0] != "b1" {
		t.Fatalf("Outbound() = %+v", ob)
	}
	if _, err := tb.SetCost("internet", 7, "op", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.SetConnectorCause("internet", linkstate.CauseHopHealth, true, "b1", t0); err != nil {
		t.Fatal(err)
	}
	if ob[0].Cost != 5 || !ob[0].Up {
		t.Error("an older graph's outbound connectors changed")
	}
	now := tb.Graph().Outbound()[0]
	if now.Cost != 7 || now.Up || !now.Causes.Has(linkstate.CauseHopHealth) {
		t.Errorf("after changes: %+v, want cost 7, down for hop-health", now)
	}
	fresh, _ := linkstate.New(nil, nil, []linkstate.Connector{{Name: "other", Outbound: true, Cost: 1, Up: true, AddressSpaces: []string{"x.example"}, Sources: []string{"a1"}}})
	tb.Replace(fresh)
	if ob := tb.Graph().Outbound(); len(ob) != 1 || ob[0].Name != "other" {
		t.Errorf("after Replace: %+v", ob)
	}
}

// R9, R13: on a generated organization of 300 routing groups, with
// connectors down and costs changed, every server path is a chain of
// connectors from the source's routing group to the target's, each
// crossed between its bridgeheads, whose costs add up to RGCost's cost
// over RGCost's hops; Path, AppendPath, AppendPathByID and AppendPathIDs
// give the same servers.
func TestPathsAreLowestCostChains(t *testing.T) {
	org := orggen.Generate(7, orggen.Params{RoutingGroups: 300, Connectors: 900, Servers: 900, PublicStores: 300, Hierarchies: 3, Folders: 10, MaxReplicas: 1, DownPercent: 10})
	tb, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	conns := map[string]linkstate.Connector{}
	for _, c := range tb.Connectors() {
		conns[c.Name] = c
	}
	r := rand.New(rand.NewPCG(7, 1))
	for k := 0; k < 40; k++ {
		c := org.Connectors[r.IntN(len(org.Connectors))].Name
		if _, err := tb.SetCost(c, 1+r.IntN(100), "test", t0); err != nil {
			t.Fatal(err)
		}
		conns[c], _ = tb.Connector(c)
	}
	g := tb.Graph()
	rgOf := map[string]string{}
	for _, s := range tb.Servers() {
		rgOf[s.Name] = s.RoutingGroup
	}
	long := 0
	for k := 0; k < 3000; k++ {
		from, to := org.Servers[r.IntN(len(org.Servers))].Name, org.Servers[r.IntN(len(org.Servers))].Name
		p, ok := g.Path(from, to)
		c, hops, okC := g.RGCost(rgOf[from], rgOf[to])
		if ok != (okC && !g.ServerDown(to) || from == to) {
			t.Fatalf("%s -> %s: path %v, routing groups reachable %v", from, to, ok, okC)
		}
		if !ok {
			continue
		}
		if from != to && (p.Cost != c || len(p.Connectors) != hops) {
			t.Fatalf("%s -> %s: cost %d over %d connectors, RGCost %d over %d hops", from, to, p.Cost, len(p.Connectors), c, hops)
		}
		if hops > 6 {
			long++
		}
		at, sum := rgOf[from], 0
		for _, name := range p.Connectors {
			cn := conns[name]
			if !cn.Up || (cn.A != at && (cn.B != at || cn.OneWay)) {
				t.Fatalf("%s -> %s: connector %s (%s-%s, up %v) does not leave %s", from, to, name, cn.A, cn.B, cn.Up, at)
			}
			at = map[bool]string{true: cn.B, false: cn.A}[cn.A == at]
			sum += cn.Cost
		}
		if at != rgOf[to] || sum != p.Cost {
			t.Fatalf("%s -> %s: connectors %v end in %s (want %s), cost %d (path says %d)", from, to, p.Connectors, at, rgOf[to], sum, p.Cost)
		}
		if p.Servers[0] != from || p.Servers[len(p.Servers)-1] != to {
			t.Fatalf("%s -> %s: servers %v", from, to, p.Servers)
		}
		names, cost, ok := g.AppendPath(nil, from, to)
		fid, _ := g.ServerID(from)
		tid, _ := g.ServerID(to)
		byID, _, _ := g.AppendPathByID(nil, fid, tid)
		ids, _, _ := g.AppendPathIDs(nil, fid, tid)
		var idNames []string
		for _, id := range ids {
			idNames = append(idNames, g.ServerName(id))
		}
		if !ok || cost != p.Cost || !slices.Equal(names, p.Servers) || !slices.Equal(byID, p.Servers) || !slices.Equal(idNames, p.Servers) {
			t.Fatalf("%s -> %s: Path %v, AppendPath %v (cost %d), by id %v, ids %v", from, to, p.Servers, names, cost, byID, idNames)
		}
	}
	if long < 100 {
		t.Fatalf("only %d paths of more than 6 hops: the org does not test long paths", long)
	}
}

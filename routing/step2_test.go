package routing_test

import (
	"fmt"
	"strings"
	"testing"

	"pfrouter/envelope"
	"pfrouter/routing"
)

// R7: the hierarchy store's server holds a replica: deliver there.
func TestR7LocalReplica(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"c1": {pub("c1-pub", may), pub("c1-rep", jan)},
			"b1": {pub("b1-pub", jan)},
		},
		Folders: folder("/F", "f@x.example", "b1-pub", "c1-rep"),
	})
	d := e.decide("d1", "f@x.example")
	wantStep1(t, d, "c1-pub", "first")
	wantDeliver(t, d, "c1-rep")
	if d.Step2.Rule != "local" || d.Step2.Cost != 0 {
		t.Fatalf("step 2 %+v", d.Step2)
	}
	wantRoute(t, d, "d1", "c1")
}

// R8: a replica in the hierarchy server's routing group beats a remote one,
// even one listed first and one hop away.
func TestR8SameRoutingGroupReplica(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"b1": {pub("b1-pub", may)},
			"b2": {pub("b2-rep", jan)},
			"c1": {pub("a-c1-rep", jan)}, // sorts first by name, cost 5
		},
		Folders: folder("/F", "f@x.example", "a-c1-rep", "b2-rep"),
	})
	d := e.decide("b1", "f@x.example")
	wantStep1(t, d, "b1-pub", "local")
	wantDeliver(t, d, "b2-rep")
	if d.Step2.Rule != "routing-group" {
		t.Fatalf("rule %s", d.Step2.Rule)
	}
	wantRoute(t, d, "b1", "b2")
}

// tieConnectors make rg-c and rg-d equally far from rg-a (15), rg-c in one
// hop and rg-d in two.
const tieConnectors = `
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
  - {name: bd, between: [rg-b, rg-d], cost: 5, bridgeheads: {rg-b: [b1], rg-d: [d1]}}
  - {name: ac, between: [rg-a, rg-c], cost: 15, bridgeheads: {rg-a: [a2], rg-c: [c1]}}
`

// R9: the lowest-cost remote replica; ties by fewest hops, then by name.
func TestR9LowestCost(t *testing.T) {
	t.Run("lowest cost", func(t *testing.T) {
		e := build(t, spec{
			Stores: map[string][]string{
				"a1": {pub("a1-pub", may)},
				"b1": {pub("b1-rep", jan)},
				"c1": {pub("c1-rep", jan)},
				"d1": {pub("d1-rep", jan)},
			},
			Folders: folder("/F", "f@x.example", "d1-rep", "c1-rep", "b1-rep"),
		})
		d := e.decide("a1", "f@x.example")
		wantDeliver(t, d, "b1-rep")
		if d.Step2.Rule != "lowest-cost" || d.Cost != 10 {
			t.Fatalf("rule %s cost %d", d.Step2.Rule, d.Cost)
		}
		costs := map[string]int{}
		for _, c := range d.Step2.Considered {
			costs[c.Store] = c.Cost
		}
		if costs["b1-rep"] != 10 || costs["c1-rep"] != 15 || costs["d1-rep"] != 16 {
			t.Fatalf("considered costs %v", costs)
		}
	})
	t.Run("equal cost: fewest hops", func(t *testing.T) {
		e := build(t, spec{
			Connectors: tieConnectors,
			Stores: map[string][]string{
				"a1": {pub("a1-pub", may)},
				"c1": {pub("z-c1-rep", jan)},
				"d1": {pub("a-d1-rep", jan)}, // earlier name, more hops
			},
			Folders: folder("/F", "f@x.example", "a-d1-rep", "z-c1-rep"),
		})
		d := e.decide("a1", "f@x.example")
		wantDeliver(t, d, "z-c1-rep")
		wantRoute(t, d, "a1", "a2", "c1")
	})
	t.Run("equal cost and hops: name", func(t *testing.T) {
		e := build(t, spec{
			Connectors: tieConnectors,
			Stores: map[string][]string{
				"a1": {pub("a1-pub", may)},
				"c1": {pub("c1-zeta", jan), pub("c1-alpha", jan)},
			},
			Folders: folder("/F", "f@x.example", "c1-zeta", "c1-alpha"),
		})
		for i := 0; i < 5; i++ { // deterministic, not arbitrary
			wantDeliver(t, e.decideIn(routing.Input{At: "a1", Recipient: "f@x.example", MessageID: fmt.Sprintf("<%d@x>", i)}), "c1-alpha")
		}
	})
}

// R9 spread mode: the message id is hashed over the equal-cost set; the same
// id always gets the same replica, and different ids use the whole set.
func TestR9SpreadMode(t *testing.T) {
	e := build(t, spec{
		Routing:    "{store_min_age: 48h, spread: true}",
		Connectors: tieConnectors,
		Stores: map[string][]string{
			"a1": {pub("a1-pub", may)},
			"b1": {pub("b1-rep", jan)}, // cost 10: cheaper, always wins
			"c1": {pub("c1-zeta", jan), pub("c1-alpha", jan)},
		},
		Folders: folder("/F", "f@x.example", "c1-zeta", "c1-alpha"),
	})
	seen := map[string]int{}
	for i := 0; i < 64; i++ {
		id := fmt.Sprintf("<msg-%d@x.example>", i)
		first := e.decideIn(routing.Input{At: "a1", Recipient: "f@x.example", MessageID: id})
		again := e.decideIn(routing.Input{At: "a1", Recipient: "f@x.example", MessageID: id})
		if first.Outcome != routing.Deliver || first.Store != again.Store {
			t.Fatalf("%s: %s then %s", id, first.Store, again.Store)
		}
		seen[first.Store]++
	}
	if len(seen) != 2 || seen["c1-alpha"] == 0 || seen["c1-zeta"] == 0 {
		t.Fatalf("spread over equal-cost set = %v, want both replicas", seen)
	}

	// Spread never picks a costlier replica over a cheaper one.
	e = build(t, spec{
		Routing:    "{store_min_age: 48h, spread: true}",
		Connectors: tieConnectors,
		Stores: map[string][]string{
			"a1": {pub("a1-pub", may)},
			"b1": {pub("b1-rep", jan)},
			"c1": {pub("c1-zeta", jan), pub("c1-alpha", jan)},
		},
		Folders: folder("/F", "f@x.example", "c1-zeta", "c1-alpha", "b1-rep"),
	})
	for i := 0; i < 32; i++ {
		wantDeliver(t, e.decideIn(routing.Input{At: "a1", Recipient: "f@x.example", MessageID: fmt.Sprintf("<%d@x>", i)}), "b1-rep")
	}
}

// R10: only reachable replicas count; a connector going down makes the next
// best one win; nothing reachable queues the message.
func TestR10ConnectorDown(t *testing.T) {
	mk := func() *env {
		return build(t, spec{
			Stores: map[string][]string{
				"a1": {pub("a1-pub", may)},
				"b1": {pub("b1-rep", jan)}, // cost 10
				"d1": {pub("d1-rep", jan)}, // cost 16
			},
			Folders: folder("/F", "f@x.example", "b1-rep", "d1-rep"),
		})
	}
	e := mk()
	wantDeliver(t, e.decide("a1", "f@x.example"), "b1-rep")

	// ab down: rg-b now costs 25 (ac 20 + bc 5), rg-d 21 (ac 20 + cd 1).
	e.down(t, "ab")
	d := e.decide("a1", "f@x.example")
	wantDeliver(t, d, "d1-rep")
	if d.Cost != 21 {
		t.Fatalf("cost %d, want 21\n%s", d.Cost, explain(d))
	}
	wantRoute(t, d, "a1", "a2", "c1", "d1")

	// All paths out of rg-a down: queue, every replica listed unreachable.
	e.down(t, "ac")
	d = e.decide("a1", "f@x.example")
	wantOutcome(t, d, routing.Queue, "4.4.1")
	for _, c := range d.Step2.Considered {
		if c.Reachable {
			t.Fatalf("%s reported reachable", c.Store)
		}
	}

	// The replica's server down (not a connector): next best.
	e = mk()
	e.serverDown(t, "b1") // also the only rg-b bridgehead of ab and bc
	wantDeliver(t, e.decide("a1", "f@x.example"), "d1-rep")
}

// R12: a folder without any replica ends in a non-delivery report.
func TestR12NoReplica(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a1": {pub("a1-pub", may)}},
		Folders: "\n  - {path: /Empty, hierarchy: PF, addresses: [empty@x.example]}",
	})
	d := e.decide("a1", "empty@x.example")
	wantOutcome(t, d, routing.NDR, "5.4.4")
	if !strings.Contains(d.Reason, "no replica") {
		t.Fatalf("reason %q does not name the cause", d.Reason)
	}
}

// R13: between routing groups mail goes bridgehead to bridgehead; within a
// routing group, directly.
func TestR13BridgeheadPath(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"b2": {pub("b2-pub", may)},
			"d1": {pub("d1-rep", jan)},
		},
		Folders: folder("/F", "f@x.example", "d1-rep"),
	})
	// a2 is not ab's bridgehead: a2 > a1 (rg-a side) > b1 (rg-b side) > b2,
	// then step 2 from b2: b2 > b1 > c1 > d1.
	d := e.decide("a2", "f@x.example")
	wantDeliver(t, d, "d1-rep")
	wantRoute(t, d, "a2", "a1", "b1", "b2", "b1", "c1", "d1")
	if d.Cost != 10+5+1 {
		t.Fatalf("cost %d", d.Cost)
	}
	if strings.Join(d.Step2.Connectors, ",") != "bc,cd" {
		t.Fatalf("step 2 connectors %v", d.Step2.Connectors)
	}
}

// R13: a one-way connector carries mail from its first routing group to
// its second only.
func TestR13OneWayConnector(t *testing.T) {
	conns := `
  - {name: ba, between: [rg-b, rg-a], cost: 10, one_way: true, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
  - {name: bc, between: [rg-b, rg-c], cost: 5, bridgeheads: {rg-b: [b1], rg-c: [c1]}}
  - {name: ac, between: [rg-a, rg-c], cost: 20, bridgeheads: {rg-a: [a2], rg-c: [c1]}}
`
	e := build(t, spec{
		Connectors: conns,
		Stores: map[string][]string{
			"a1": {pub("a1-pub", may)},
			"b2": {pub("b2-pub", may)},
		},
		Folders: folder("/F", "f@x.example", "a1-pub") + folder("/G", "g@x.example", "b2-pub"),
	})
	// rg-b -> rg-a: direct over ba.
	d := e.decide("b2", "f@x.example")
	wantDeliver(t, d, "a1-pub")
	wantRoute(t, d, "b2", "b1", "a1") // bridgehead b1, then a1 on the rg-a side
	// rg-a -> rg-b: not over ba; around by rg-c.
	d = e.decide("a1", "g@x.example")
	wantDeliver(t, d, "b2-pub")
	if d.Cost != 25 {
		t.Fatalf("cost %d, want 25 (ac+bc)\n%s", d.Cost, explain(d))
	}
	wantRoute(t, d, "a1", "a2", "c1", "b1", "b2")
}

// R14 (corrected): a loop is a message over the hop limit, or a recipient
// that comes back to a server in the same stage for the same destination;
// passing a server twice on the way to different destinations is not one.
func TestR14LoopAndHopLimit(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a1": {pub("a1-pub", may)}},
		Folders: folder("/F", "f@x.example", "a1-pub"),
		Users:   "\n  - {name: u, addresses: [u@x.example], mailbox_store: c1-mbx, password: pw}",
	})
	hier := func(srv, dest string) envelope.Visit {
		return envelope.Visit{Server: srv, Stage: envelope.StageHierarchy, Dest: dest}
	}
	target := func(srv, dest string) envelope.Visit {
		return envelope.Visit{Server: srv, Stage: envelope.StageTarget, Dest: dest}
	}
	cases := []struct {
		name    string
		in      routing.Input
		outcome routing.Outcome
		code    string
	}{
		{"a1 left toward a hierarchy store, back toward a replica (a1, a2, a1, b1)",
			routing.Input{At: "a1", Recipient: "f@x.example", Stage: envelope.StageTarget, Dest: "b1-pub", Visits: []envelope.Visit{hier("a1", "a2-pub"), target("a2", "b1-pub")}},
			routing.Deliver, ""},
		{"same server, same stage, same destination",
			routing.Input{At: "a1", Recipient: "f@x.example", Stage: envelope.StageTarget, Dest: "b1-pub", Visits: []envelope.Visit{target("a1", "b1-pub"), target("a2", "b1-pub")}},
			routing.NDR, "5.4.6"},
		{"same server and stage, other destination",
			routing.Input{At: "a1", Recipient: "f@x.example", Stage: envelope.StageTarget, Dest: "b1-pub", Visits: []envelope.Visit{target("a1", "c1-pub")}},
			routing.Deliver, ""},
		{"same server and destination, other stage",
			routing.Input{At: "a1", Recipient: "f@x.example", Stage: envelope.StageHierarchy, Dest: "a1-pub", Visits: []envelope.Visit{target("a1", "a1-pub")}},
			routing.Deliver, ""},
		{"back before any decision (new stage), user",
			routing.Input{At: "a1", Recipient: "u@x.example", Visits: []envelope.Visit{{Server: "a1"}}},
			routing.NDR, "5.4.6"},
		{"other servers only",
			routing.Input{At: "a1", Recipient: "f@x.example", Stage: envelope.StageTarget, Dest: "b1-pub", Visits: []envelope.Visit{target("c1", "b1-pub"), target("b1", "b1-pub")}},
			routing.Deliver, ""},
		{"at the hop limit", routing.Input{At: "a1", Recipient: "f@x.example", Hops: 30}, routing.Deliver, ""},
		{"over the hop limit", routing.Input{At: "a1", Recipient: "f@x.example", Hops: 31}, routing.NDR, "5.4.6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantOutcome(t, e.decideIn(c.in), c.outcome, c.code)
			if got := routing.LoopCheck(e.params(), c.in); (got != nil) != (c.outcome == routing.NDR) {
				t.Errorf("LoopCheck = %v, want a refusal %t", got, c.outcome == routing.NDR)
			}
		})
	}
}

// R14 (corrected), the topology of the most common Exchange layout: the
// bridgehead a1 is not the public folder server. Step 1 at a1 picks the
// hierarchy store on a2, step 2 there the replica in rg-b behind a1: the
// route passes a1 twice and is delivered, not refused as a loop, at each
// server on the way.
func TestR14RouteBackThroughBridgehead(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a2": {pub("a2-pub", jan)}, "b1": {pub("b1-pub", may)}},
		Folders: folder("/F", "f@x.example", "b1-pub"),
	})
	snap, g, p := e.dir.Snapshot(), e.table.Graph(), e.params()
	d := e.decide("a1", "f@x.example")
	wantStep1(t, d, "a2-pub", "routing-group")
	wantDeliver(t, d, "b1-pub")
	wantRoute(t, d, "a1", "a2", "a1", "b1")
	// At a2, carried step 1; step 2 sends it back through a1.
	visits := []envelope.Visit{{Server: "a1", Stage: envelope.StageHierarchy, Dest: "a2-pub"}}
	d = routing.Continue(snap, g, p, routing.Input{At: "a2", Recipient: "f@x.example", Now: now, Hops: 1,
		Stage: envelope.StageHierarchy, Dest: "a2-pub", Visits: visits}, "a2-pub")
	wantDeliver(t, d, "b1-pub")
	wantRoute(t, d, "a2", "a1", "b1")
	// Back at a1 on its way to b1-pub: forwarded, not a loop.
	visits = append(visits, envelope.Visit{Server: "a2", Stage: envelope.StageTarget, Dest: "b1-pub"})
	if c := routing.LoopCheck(p, routing.Input{At: "a1", Hops: 2, Stage: envelope.StageTarget, Dest: "b1-pub", Visits: visits}); c != nil {
		t.Fatalf("a1 refuses the returning message: %v", c)
	}
	// Were a1 to send it to a2 again (link state disagreeing), it would
	// come back to a1 a second time in stage target for b1-pub: a loop.
	visits = append(visits, envelope.Visit{Server: "a1", Stage: envelope.StageTarget, Dest: "b1-pub"}, envelope.Visit{Server: "a2", Stage: envelope.StageTarget, Dest: "b1-pub"})
	if c := routing.LoopCheck(p, routing.Input{At: "a1", Hops: 4, Stage: envelope.StageTarget, Dest: "b1-pub", Visits: visits}); c == nil || c.Code != "5.4.6" {
		t.Fatalf("real loop not refused: %v", c)
	}
}

// R13/R14: Continue runs on the hierarchy server with the carried step-1
// choice, re-checks loops, and reroutes when the store does not know the
// folder (R12).
func TestContinueCarriedChoice(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"c1": {pub("c1-pub", may)},
			"b1": {pub("b1-pub", jan)},
			"d1": {pub("d1-rep", jan)},
		},
		Folders: folder("/F", "f@x.example", "d1-rep"),
	})
	snap, g, p := e.dir.Snapshot(), e.table.Graph(), e.params()
	// Carried to b1 although step 1 at b1 would pick b1-pub: not recomputed.
	d := routing.Continue(snap, g, p, routing.Input{At: "c1", Recipient: "f@x.example", Now: now}, "c1-pub")
	wantDeliver(t, d, "d1-rep")
	if d.Step1.Rule != "carried" || d.Step1.Store != "c1-pub" {
		t.Fatalf("step 1 %+v", d.Step1)
	}
	wantRoute(t, d, "c1", "d1")

	back := []envelope.Visit{{Server: "c1", Stage: envelope.StageHierarchy, Dest: "c1-pub"}}
	d = routing.Continue(snap, g, p, routing.Input{At: "c1", Recipient: "f@x.example", Now: now, Stage: envelope.StageHierarchy, Dest: "c1-pub", Visits: back}, "c1-pub")
	wantOutcome(t, d, routing.NDR, "5.4.6")

	if err := e.dir.SetSynced("c1-pub", false); err != nil {
		t.Fatal(err)
	}
	d = routing.Continue(e.dir.Snapshot(), g, p, routing.Input{At: "c1", Recipient: "f@x.example", Now: now}, "c1-pub")
	wantDeliver(t, d, "d1-rep")
	if d.Step1.Store != "b1-pub" || strings.Join(d.Excluded, ",") != "c1-pub" {
		t.Fatalf("rerouted step 1 %+v excluded %v", d.Step1, d.Excluded)
	}
}

package routing_test

import (
	"strings"
	"testing"
	"time"

	"pfrouter/hierarchy"
	"pfrouter/routing"
)

// R1: addresses and aliases resolve; local parts are case-insensitive unless
// the domain says otherwise; domains must be accepted.
func TestR1Resolve(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{"a1": {pub("a1-pub", jan)}},
		Folders: folder("/F", "f@x.example", "a1-pub") +
			"\n  - {path: /G, hierarchy: PF, alias: galias, replicas: [a1-pub]}" +
			"\n  - {path: /CS, hierarchy: PF, addresses: [Mixed@cs.example], replicas: [a1-pub]}",
		Users: "\n  - {name: u, addresses: [u@x.example], mailbox_store: c1-mbx, password: pw}",
	})
	cases := []struct {
		name, rcpt, folder, user string
		outcome                  routing.Outcome
		code                     string
	}{
		{"address", "f@x.example", "/F", "", routing.Deliver, ""},
		{"address upper local part", "F@x.example", "/F", "", routing.Deliver, ""},
		{"address upper domain", "f@X.EXAMPLE", "/F", "", routing.Deliver, ""},
		{"alias", "galias@x.example", "/G", "", routing.Deliver, ""},
		{"alias mixed case", "GAlias@x.example", "/G", "", routing.Deliver, ""},
		{"alias on every accepted domain", "galias@cs.example", "/G", "", routing.Deliver, ""},
		{"case-sensitive domain exact", "Mixed@cs.example", "/CS", "", routing.Deliver, ""},
		{"case-sensitive domain other case", "mixed@cs.example", "", "", routing.NDR, "5.1.1"},
		{"case-sensitive domain alias other case", "GALIAS@cs.example", "", "", routing.NDR, "5.1.1"},
		{"user (S4)", "U@x.example", "", "u", routing.Deliver, ""},
		{"unknown local part", "nobody@x.example", "", "", routing.NDR, "5.1.1"},
		{"non-accepted domain", "f@y.example", "", "", routing.NDR, "5.7.1"},
		{"subdomain is not accepted", "f@sub.x.example", "", "", routing.NDR, "5.7.1"},
		{"no domain", "f", "", "", routing.NDR, "5.1.3"},
		{"empty local part", "@x.example", "", "", routing.NDR, "5.1.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.decide("a1", c.rcpt)
			if d.Outcome != c.outcome || d.Code != c.code || d.Folder != c.folder || d.User != c.user {
				t.Fatalf("%s: got outcome=%s code=%s folder=%q user=%q; want %s %s %q %q\n%s",
					c.rcpt, d.Outcome, d.Code, d.Folder, d.User, c.outcome, c.code, c.folder, c.user, explain(d))
			}
		})
	}
}

// R2: the hierarchy's store list is most recently created first, and R5 takes
// the head of that list.
func TestR2NewestFirst(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"b1": {pub("b1-old", jan)},
			"b2": {pub("b2-new", may)},
			"c1": {pub("c1-mid", mar)},
		},
		Folders: folder("/F", "f@x.example", "c1-mid"),
	})
	h := e.dir.Snapshot().Hierarchy("PF")
	var got []string
	for _, s := range h.Stores {
		got = append(got, s.Name)
	}
	if strings.Join(got, ",") != "b2-new,c1-mid,b1-old" {
		t.Fatalf("hierarchy store order = %v, want newest first", got)
	}
	d := e.decide("d1", "f@x.example") // rg-d holds no store: R5
	wantStep1(t, d, "b2-new", "first")
}

// R3: a store on the local server wins, even when a store of the local
// routing group is listed before it (older stores come later; here the RG
// store is newer so it is listed first) and even when a remote store is
// newer still.
func TestR3LocalStoreWins(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"a1": {pub("a1-pub", feb)},
			"a2": {pub("a2-pub", apr)}, // same RG, listed before a1-pub
			"b1": {pub("b1-pub", may)}, // newest of all
		},
		Folders: folder("/F", "f@x.example", "a1-pub"),
	})
	d := e.decide("a1", "f@x.example")
	wantStep1(t, d, "a1-pub", "local")
	wantDeliver(t, d, "a1-pub")
	wantRoute(t, d, "a1")

	// And when the RG store is older than the local one.
	e = build(t, spec{
		Stores: map[string][]string{
			"a1": {pub("a1-pub", apr)},
			"a2": {pub("a2-pub", jan)},
		},
		Folders: folder("/F", "f@x.example", "a1-pub"),
	})
	wantStep1(t, e.decide("a1", "f@x.example"), "a1-pub", "local")
}

// R4: no local store: a store in the local routing group, the first in list
// order when there are several.
func TestR4RoutingGroupStore(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"a2": {pub("a2-older", feb), pub("a2-newer", apr)},
			"b1": {pub("b1-pub", may)}, // newest, but remote
		},
		Folders: folder("/F", "f@x.example", "a2-older"),
	})
	d := e.decide("a1", "f@x.example")
	wantStep1(t, d, "a2-newer", "routing-group")
	wantDeliver(t, d, "a2-older")
	wantRoute(t, d, "a1", "a2") // within a routing group servers send directly (R13)
}

// R5: neither local nor in the routing group: the first store in the list.
func TestR5FirstInList(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"b1": {pub("b1-pub", feb)},
			"c1": {pub("c1-pub", apr)},
		},
		Folders: folder("/F", "f@x.example", "b1-pub"),
	})
	d := e.decide("a1", "f@x.example")
	wantStep1(t, d, "c1-pub", "first")
	if d.HierarchyServer != "c1" {
		t.Fatalf("hierarchy server = %s", d.HierarchyServer)
	}
}

// R6: the store_min_age filter, at one-minute precision around 48h.
func TestR6StoreMinAge(t *testing.T) {
	const minAge = 48 * time.Hour
	younger := ago(minAge - time.Minute)
	older := ago(minAge + time.Minute)
	cases := []struct {
		name      string
		routing   string
		at        string
		stores    map[string][]string
		want      string
		rule      string
		usedYoung bool
	}{
		{"one minute younger than store_min_age is skipped", "", "d1",
			map[string][]string{"b1": {pub("b1-pub", younger)}, "c1": {pub("c1-pub", jan)}}, "c1-pub", "first", false},
		{"one minute older than store_min_age is used", "", "d1",
			map[string][]string{"b1": {pub("b1-pub", older)}, "c1": {pub("c1-pub", jan)}}, "b1-pub", "first", false},
		{"all stores young: young ones used by the same rules", "", "d1",
			map[string][]string{"b1": {pub("b1-pub", younger)}, "c1": {pub("c1-pub", ago(time.Hour))}}, "c1-pub", "first", true},
		{"young local store is skipped too", "", "a1",
			map[string][]string{"a1": {pub("a1-pub", younger)}, "c1": {pub("c1-pub", jan)}}, "c1-pub", "first", false},
		{"young routing-group store is skipped too", "", "a1",
			map[string][]string{"a2": {pub("a2-pub", younger)}, "c1": {pub("c1-pub", jan)}}, "c1-pub", "first", false},
		{"all young: local young store wins (R3 after R6)", "", "a1",
			map[string][]string{"a1": {pub("a1-pub", ago(time.Hour))}, "c1": {pub("c1-pub", younger)}}, "a1-pub", "local", true},
		{"store_min_age 0 disables the skip", "{store_min_age: 0}", "a1",
			map[string][]string{"a1": {pub("a1-pub", ago(time.Minute))}, "c1": {pub("c1-pub", jan)}}, "a1-pub", "local", false},
		{"store_min_age 1h: a 2h-old store is old enough", "{store_min_age: 1h}", "a1",
			map[string][]string{"a1": {pub("a1-pub", ago(2*time.Hour))}, "c1": {pub("c1-pub", jan)}}, "a1-pub", "local", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reps []string
			for _, l := range c.stores {
				for _, s := range l {
					reps = append(reps, storeName(s))
				}
			}
			e := build(t, spec{Routing: c.routing, Stores: c.stores, Folders: folder("/F", "f@x.example", reps...)})
			d := e.decide(c.at, "f@x.example")
			wantStep1(t, d, c.want, c.rule)
			if d.Step1.UsedYoung != c.usedYoung {
				t.Fatalf("UsedYoung = %v, want %v\n%s", d.Step1.UsedYoung, c.usedYoung, explain(d))
			}
			if d.Outcome != routing.Deliver {
				t.Fatalf("outcome %s\n%s", d.Outcome, explain(d))
			}
		})
	}
}

// R6: store_min_age is runtime-tunable: the same directory gives another
// answer when Params.MinAge changes.
func TestR6RuntimeTunable(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a1": {pub("a1-pub", ago(3*time.Hour))}, "c1": {pub("c1-pub", jan)}},
		Folders: folder("/F", "f@x.example", "c1-pub"),
	})
	in := routing.Input{At: "a1", Recipient: "f@x.example", Now: now}
	p := e.params()
	if d := routing.Decide(e.dir.Snapshot(), e.table.Graph(), p, in); d.Step1.Store != "c1-pub" {
		t.Fatalf("48h: got %s", d.Step1.Store)
	}
	p.MinAge = time.Hour
	if d := routing.Decide(e.dir.Snapshot(), e.table.Graph(), p, in); d.Step1.Store != "a1-pub" {
		t.Fatalf("1h: got %s", d.Step1.Store)
	}
}

// R6b: a hierarchy store whose server is unreachable over link state is
// skipped; none reachable means the message waits in the queue.
func TestR6bUnreachableHierarchyStore(t *testing.T) {
	mk := func() *env {
		return build(t, spec{
			Stores: map[string][]string{
				"b2": {pub("b2-pub", may)}, // newest: R5 would take it
				"c1": {pub("c1-pub", feb)},
			},
			Folders: folder("/F", "f@x.example", "c1-pub"),
		})
	}
	e := mk()
	wantStep1(t, e.decide("a1", "f@x.example"), "b2-pub", "first")

	e.serverDown(t, "b2")
	d := e.decide("a1", "f@x.example")
	wantStep1(t, d, "c1-pub", "first")
	wantDeliver(t, d, "c1-pub")
	if !strings.Contains(explain(d), "R6b") {
		t.Fatalf("skip reason does not name R6b\n%s", explain(d))
	}

	// Every path to rg-b and rg-c down: nothing reachable, queue (R6b, R10).
	e = mk()
	e.down(t, "ab", "ac")
	wantOutcome(t, e.decide("a1", "f@x.example"), routing.Queue, "4.4.1")

	// Link state comes back: routed again.
	if _, err := e.table.SetUp("ac", true, "test", now); err != nil {
		t.Fatal(err)
	}
	wantDeliver(t, e.decide("a1", "f@x.example"), "c1-pub")
}

// R12: a hierarchy store that does not know the folder sends the message
// back to step 1 with that store excluded; NDR only when none is left.
func TestR12HierarchyStoreNotSynced(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"c1": {unsynced("c1-pub", may)}, // newest: chosen first, does not know /F
			"b1": {pub("b1-pub", feb)},
		},
		Folders: folder("/F", "f@x.example", "b1-pub"),
	})
	d := e.decide("d1", "f@x.example")
	wantDeliver(t, d, "b1-pub")
	if len(d.Attempts) != 1 || d.Attempts[0].Store != "c1-pub" {
		t.Fatalf("attempts = %+v\n%s", d.Attempts, explain(d))
	}
	if strings.Join(d.Excluded, ",") != "c1-pub" {
		t.Fatalf("excluded = %v", d.Excluded)
	}
	// Step 1 ran again on c1 (the unsynced store's server), which chose b1-pub.
	if d.Step1.At != "c1" || d.Step1.Store != "b1-pub" {
		t.Fatalf("second step 1 = %+v", d.Step1)
	}
	wantRoute(t, d, "d1", "c1", "b1")

	// Exclusions travel with the message: an excluded store is not tried.
	d = e.decideIn(routing.Input{At: "d1", Recipient: "f@x.example", Excluded: []string{"c1-pub"}})
	wantDeliver(t, d, "b1-pub")
	if len(d.Attempts) != 0 {
		t.Fatalf("excluded store tried again: %+v", d.Attempts)
	}

	// No store knows the folder: NDR 5.4.4.
	e = build(t, spec{
		Stores: map[string][]string{
			"c1": {unsynced("c1-pub", may)},
			"b1": {unsynced("b1-pub", feb)},
		},
		Folders: folder("/F", "f@x.example", "b1-pub"),
	})
	d = e.decide("d1", "f@x.example")
	wantOutcome(t, d, routing.NDR, "5.4.4")
	if len(d.Attempts) != 2 || !strings.Contains(d.Reason, "R12") {
		t.Fatalf("attempts %d, reason %q", len(d.Attempts), d.Reason)
	}
}

// R12: SetSynced at runtime makes a store usable again.
func TestR12SyncCompletes(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a1": {unsynced("a1-pub", feb)}},
		Folders: folder("/F", "f@x.example", "a1-pub"),
	})
	wantOutcome(t, e.decide("a1", "f@x.example"), routing.NDR, "5.4.4")
	if err := e.dir.SetSynced("a1-pub", true); err != nil {
		t.Fatal(err)
	}
	wantDeliver(t, e.decide("a1", "f@x.example"), "a1-pub")
}

// A hierarchy nobody holds: NDR 5.4.4.
func TestNoStoreHoldsHierarchy(t *testing.T) {
	e := build(t, spec{
		Stores:  map[string][]string{"a1": {pub("a1-pub", feb)}},
		Folders: "\n  - {path: /X, hierarchy: App, addresses: [x@x.example], mail_enabled: true}",
	})
	d := e.decide("a1", "x@x.example")
	wantOutcome(t, d, routing.NDR, "5.4.4")
}

// S4: mail to a user goes to the mailbox store's server, along the path.
func TestS4UserMailbox(t *testing.T) {
	e := build(t, spec{
		Users: "\n  - {name: u, addresses: [u@x.example], mailbox_store: c1-mbx, password: pw}" +
			"\n  - {name: v, addresses: [v@x.example], mailbox_store: a1-mbx, password: pw}",
	})
	d := e.decide("a2", "u@x.example")
	wantDeliver(t, d, "c1-mbx")
	if d.Server != "c1" || d.User != "u" || d.Cost != 15 {
		t.Fatalf("server %s user %s cost %d", d.Server, d.User, d.Cost)
	}
	wantRoute(t, d, "a2", "a1", "b1", "c1")

	d = e.decide("a1", "v@x.example")
	wantDeliver(t, d, "a1-mbx")
	wantRoute(t, d, "a1")

	e.serverDown(t, "c1")
	wantOutcome(t, e.decide("a2", "u@x.example"), routing.Queue, "4.4.1")
}

// Readiness beats age (issue 12, with R6): a store whose hierarchy is still
// being replicated is skipped whatever its age, even local and old, with
// the reason "hierarchy not yet replicated"; with only pending stores
// nothing is chosen and the message waits for them.
func TestR6ReadinessBeatsAge(t *testing.T) {
	cases := []struct {
		name    string
		routing string
		stores  map[string][]string
		pending []string
		want    string
		rule    string
	}{
		{"old local pending: routing-group store instead", "",
			map[string][]string{"a1": {pub("a1-pub", jan)}, "a2": {pub("a2-pub", jan)}}, []string{"a1-pub"}, "a2-pub", "routing-group"},
		{"young pending not used even when every other store is young", "",
			map[string][]string{"a1": {pub("a1-pub", ago(time.Hour))}, "a2": {pub("a2-pub", ago(time.Hour))}}, []string{"a1-pub"}, "a2-pub", "routing-group"},
		{"store_min_age 0 does not let a pending store in", "{store_min_age: 0}",
			map[string][]string{"a1": {pub("a1-pub", ago(time.Hour))}, "c1": {pub("c1-pub", jan)}}, []string{"a1-pub"}, "c1-pub", "first"},
		{"ready: chosen by R3", "",
			map[string][]string{"a1": {pub("a1-pub", jan)}, "c1": {pub("c1-pub", jan)}}, nil, "a1-pub", "local"},
		{"only pending stores: nothing chosen", "",
			map[string][]string{"a1": {pub("a1-pub", jan)}, "a2": {pub("a2-pub", jan)}}, []string{"a1-pub", "a2-pub"}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reps []string
			for _, l := range c.stores {
				for _, s := range l {
					reps = append(reps, storeName(s))
				}
			}
			e := build(t, spec{Routing: c.routing, Stores: c.stores, Folders: folder("/F", "f@x.example", reps...)})
			for _, st := range c.pending {
				if err := e.dir.SetHierarchyPending(st, true); err != nil {
					t.Fatal(err)
				}
			}
			d := e.decide("a1", "f@x.example")
			if c.want == "" {
				if d.Step1.Store != "" || d.Outcome == routing.Deliver {
					t.Fatalf("chose %q (outcome %s), want nothing while every store is pending\n%s", d.Step1.Store, d.Outcome, explain(d))
				}
			} else {
				wantStep1(t, d, c.want, c.rule)
			}
			skipped := map[string]string{}
			for _, sk := range d.Step1.Skipped {
				skipped[sk.Store] = sk.Reason
			}
			for _, st := range c.pending {
				if skipped[st] != hierarchy.ReasonPending {
					t.Fatalf("pending store %s skipped for %q, want %q\n%s", st, skipped[st], hierarchy.ReasonPending, explain(d))
				}
			}
		})
	}
}

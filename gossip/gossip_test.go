package gossip

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"pfrouter/internal/trusttest"
	"sync"
	"testing"
	"time"
)

// recorder is an Applier that remembers what it applied.
type recorder struct {
	mu      sync.Mutex
	applied []Record
	refuse  func(Record) error
}

func (a *recorder) Apply(r Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuse != nil {
		if err := a.refuse(r); err != nil {
			return err
		}
	}
	a.applied = append(a.applied, r)
	return nil
}

func (a *recorder) list() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Record(nil), a.applied...)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

const testSecret = trusttest.Secret

func fastOpts(t *testing.T, name string, seeds ...string) Options {
	return Options{
		Name: name, Bind: "127.0.0.1:0", Seeds: seeds, Secret: testSecret, Identity: trusttest.Identity(t, testSecret, name),
		Dir: t.TempDir(), Applier: &recorder{}, Logger: testLogger(t),
		PushPullInterval: 300 * time.Millisecond, ProbeInterval: 200 * time.Millisecond,
		JoinRetry: 200 * time.Millisecond,
	}
}

func start(t *testing.T, o Options) *Node {
	t.Helper()
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start %s: %v", o.Name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func aliveCount(n *Node) int {
	c := 0
	for _, m := range n.Members() {
		if m.Alive {
			c++
		}
	}
	return c
}

// cluster starts n nodes seeded with the first one and waits until every
// node sees all of them alive.
func cluster(t *testing.T, names ...string) []*Node {
	t.Helper()
	first := start(t, fastOpts(t, names[0]))
	nodes := []*Node{first}
	for _, name := range names[1:] {
		nodes = append(nodes, start(t, fastOpts(t, name, first.Seed())))
	}
	eventually(t, 10*time.Second, "full membership", func() bool {
		for _, n := range nodes {
			if aliveCount(n) != len(nodes) {
				return false
			}
		}
		return true
	})
	return nodes
}

func converged(nodes ...*Node) bool {
	d := nodes[0].Digest()
	for _, n := range nodes[1:] {
		if n.Digest() != d {
			return false
		}
	}
	return true
}

func value(t *testing.T, r Record) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Value, &m); err != nil {
		t.Fatalf("value of %s %q: %v", r.Kind, r.Key, err)
	}
	return m
}

// O1: a connector cost change made on one server reaches every server and
// is applied there.
func TestPublishConvergesO1(t *testing.T) {
	nodes := cluster(t, "ex1", "ex2", "ex3")
	r, err := nodes[0].Publish(KindConnector, "tokyo-berlin", map[string]any{"cost": 20, "up": true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Origin != "ex1" || r.Version == 0 {
		t.Fatalf("published record %+v", r)
	}
	eventually(t, 10*time.Second, "records to converge", func() bool {
		for _, n := range nodes {
			if got, ok := n.Record(KindConnector, "tokyo-berlin"); !ok || got.Version != r.Version {
				return false
			}
		}
		return converged(nodes...)
	})
	for _, n := range nodes {
		applied := n.o.Applier.(*recorder).list()
		if len(applied) != 1 || applied[0].Key != "tokyo-berlin" || value(t, applied[0])["cost"] != float64(20) {
			t.Errorf("%s applied %+v, want the one cost change", n.o.Name, applied)
		}
		if n.Version() != r.Version {
			t.Errorf("%s version %d, want %d", n.o.Name, n.Version(), r.Version)
		}
	}
	// Lamport: a later change anywhere orders after what was seen.
	r2, err := nodes[2].Publish(KindConnector, "tokyo-berlin", map[string]any{"cost": 30, "up": true})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Version <= r.Version {
		t.Fatalf("later change has version %d, not above %d", r2.Version, r.Version)
	}
	eventually(t, 10*time.Second, "second change to converge", func() bool {
		for _, n := range nodes {
			if got, _ := n.Record(KindConnector, "tokyo-berlin"); got.Version != r2.Version {
				return false
			}
		}
		return true
	})
}

// Concurrent changes to one key end with the same winner everywhere.
func TestConflictingPublishesResolveIdentically(t *testing.T) {
	nodes := cluster(t, "ex1", "ex2", "ex3")
	var wg sync.WaitGroup
	pub := make([]Record, 3)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.Publish(KindConnector, "berlin-paris", map[string]any{"cost": 10 * (i + 1)})
			if err != nil {
				t.Error(err)
			}
			pub[i] = r
		}()
	}
	wg.Wait()
	want := pub[0]
	for _, r := range pub[1:] {
		if r.beats(want) {
			want = r
		}
	}
	eventually(t, 10*time.Second, "conflict to resolve identically", func() bool {
		for _, n := range nodes {
			got, _ := n.Record(KindConnector, "berlin-paris")
			if got.Origin != want.Origin || got.Version != want.Version {
				return false
			}
		}
		return converged(nodes...)
	})
	for _, n := range nodes {
		applied := n.o.Applier.(*recorder).list()
		last := applied[len(applied)-1]
		if last.Origin != want.Origin || last.Version != want.Version {
			t.Errorf("%s last applied %s v%d, want %s v%d", n.o.Name, last.Origin, last.Version, want.Origin, want.Version)
		}
	}
}

// The merge rule: higher version wins, equal versions break on the greater
// origin, and an older record never overwrites a newer one.
func TestMergeRuleOlderVersionIgnored(t *testing.T) {
	o := fastOpts(t, "ex1")
	n := start(t, o)
	rec := o.Applier.(*recorder)
	mk := func(v uint64, origin string, cost int) Record {
		b, _ := json.Marshal(map[string]int{"cost": cost})
		return Record{Kind: KindConnector, Key: "c", Origin: origin, Version: v, At: time.Now(), Value: b}
	}
	if !n.merge(mk(5, "ex2", 50)) {
		t.Fatal("first record not taken")
	}
	if n.merge(mk(3, "ex3", 30)) {
		t.Fatal("older version overwrote a newer one")
	}
	if n.merge(mk(5, "ex2", 50)) {
		t.Fatal("the same record again counted as a change")
	}
	if n.merge(mk(5, "ex0", 51)) {
		t.Fatal("equal version from a lesser origin won")
	}
	if !n.merge(mk(5, "ex9", 59)) {
		t.Fatal("equal version from a greater origin lost")
	}
	got, _ := n.Record(KindConnector, "c")
	if got.Origin != "ex9" || value(t, got)["cost"] != float64(59) {
		t.Fatalf("winner %+v", got)
	}
	if len(rec.list()) != 2 {
		t.Fatalf("applied %d records, want 2 (only winners)", len(rec.list()))
	}
	// The clock moved past what was seen: the next local change wins.
	r, err := n.Publish(KindConnector, "c", map[string]int{"cost": 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 6 {
		t.Fatalf("local change after seeing v5 has version %d, want 6", r.Version)
	}
	if n.merge(Record{Kind: "", Origin: "x", Version: 9}) || n.merge(Record{Kind: "k", Origin: "", Version: 9}) {
		t.Fatal("invalid record merged")
	}
}

// Publish refuses a change the Applier refuses, and sends nothing.
func TestPublishRefusedByApplier(t *testing.T) {
	o := fastOpts(t, "ex1")
	o.Applier = &recorder{refuse: func(r Record) error { return fmt.Errorf("connector %q is not in link state", r.Key) }}
	n := start(t, o)
	if _, err := n.Publish(KindConnector, "nope", map[string]int{"cost": 5}); err == nil {
		t.Fatal("refused change published")
	}
	if len(n.Records()) != 0 {
		t.Fatalf("records after a refused change: %+v", n.Records())
	}
}

// A record whose Apply fails (a replica before its store) is retried after
// a later record applies.
func TestPendingRetriedAfterDependency(t *testing.T) {
	o := fastOpts(t, "ex1")
	haveStore := false
	var mu sync.Mutex
	o.Applier = &recorder{refuse: func(r Record) error {
		mu.Lock()
		defer mu.Unlock()
		if r.Kind == KindStore {
			haveStore = true
		}
		if r.Kind == KindReplica && !haveStore {
			return fmt.Errorf("store not defined")
		}
		return nil
	}}
	n := start(t, o)
	n.merge(Record{Kind: KindReplica, Key: "Public Folders:/x|ex5-pub", Origin: "ex2", Version: 4, Value: json.RawMessage(`{}`)})
	n.merge(Record{Kind: KindStore, Key: "ex5-pub", Origin: "ex2", Version: 3, Value: json.RawMessage(`{}`)})
	applied := o.Applier.(*recorder).list()
	if len(applied) != 2 || applied[0].Kind != KindStore || applied[1].Kind != KindReplica {
		t.Fatalf("applied %+v, want store then replica", applied)
	}
}

// Persisted winners are re-applied on start, in version order, before the
// node talks to anyone.
func TestPersistedStateReappliedOnRestart(t *testing.T) {
	o := fastOpts(t, "ex1")
	n := start(t, o)
	if _, err := n.Publish(KindStore, "ex5-pub", map[string]string{"server": "ex1", "kind": "public", "hierarchy": "Public Folders"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(KindReplica, "Public Folders:/Sales|ex5-pub", map[string]string{"store": "ex5-pub"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(KindStoreMinAge, "", map[string]string{"store_min_age": "24h"}); err != nil {
		t.Fatal(err)
	}
	want := n.Digest()
	n.Close()

	o2 := o
	rec := &recorder{}
	o2.Applier = rec
	n2 := start(t, o2)
	got := rec.list()
	if len(got) != 3 || got[0].Kind != KindStore || got[1].Kind != KindReplica || got[2].Kind != KindStoreMinAge {
		t.Fatalf("re-applied %+v, want store, replica, store_min_age", got)
	}
	if n2.Digest() != want || n2.Version() != 3 {
		t.Fatalf("restarted digest %s version %d, want %s 3", n2.Digest(), n2.Version(), want)
	}
	r, err := n2.Publish(KindStoreMinAge, "", map[string]string{"store_min_age": "1h"})
	if err != nil || r.Version != 4 {
		t.Fatalf("clock after restart: version %d err %v, want 4", r.Version, err)
	}
}

// A server that was down catches up on changes made meanwhile (anti-entropy).
func TestRestartedNodeCatchesUp(t *testing.T) {
	nodes := cluster(t, "ex1", "ex2", "ex3")
	if _, err := nodes[0].Publish(KindConnector, "tokyo-berlin", map[string]any{"cost": 15}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first change everywhere", func() bool { return converged(nodes...) })
	o3 := nodes[2].o
	nodes[2].Close()
	eventually(t, 10*time.Second, "ex3 seen gone", func() bool { return aliveCount(nodes[0]) == 2 })

	r, err := nodes[1].Publish(KindServer, "ex4", map[string]any{"down": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Publish(KindStoreMinAge, "", map[string]any{"store_min_age": "12h"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "changes between live servers", func() bool { return converged(nodes[0], nodes[1]) })

	o3.Applier = &recorder{}
	o3.Seeds = []string{nodes[1].Seed()}
	n3 := start(t, o3)
	eventually(t, 10*time.Second, "restarted ex3 to catch up", func() bool {
		got, ok := n3.Record(KindServer, "ex4")
		return ok && got.Version == r.Version && converged(nodes[0], nodes[1], n3)
	})
	kinds := map[string]int{}
	for _, a := range o3.Applier.(*recorder).list() {
		kinds[a.Kind]++
	}
	if kinds[KindConnector] != 1 || kinds[KindServer] != 1 || kinds[KindStoreMinAge] != 1 {
		t.Fatalf("restarted ex3 applied %v, want the persisted connector change and both missed changes", kinds)
	}
}

// R13b: link-state data comes only from servers holding the organization
// secret: a node with another secret cannot join nor be read.
func TestWrongSecretCannotJoinR13b(t *testing.T) {
	a := start(t, fastOpts(t, "ex1"))
	if _, err := a.Publish(KindConnector, "tokyo-berlin", map[string]any{"cost": 99}); err != nil {
		t.Fatal(err)
	}
	o := fastOpts(t, "intruder", a.Seed())
	o.Secret = trusttest.OtherSecret
	o.Identity = trusttest.Identity(t, trusttest.OtherSecret, "intruder")
	x := start(t, o)
	if c, err := x.Join(); err == nil || c != 0 {
		t.Fatalf("join with the wrong secret: %d joined, err %v", c, err)
	}
	for _, m := range a.Members() {
		if m.Name == "intruder" {
			t.Fatalf("intruder is a member: %+v", a.Members())
		}
	}
	if len(x.Records()) != 0 {
		t.Fatalf("intruder read records: %+v", x.Records())
	}
}

// R10: a server that dies is reported dead, so link state marks it
// unreachable; it is reported alive again when it comes back.
func TestMemberDeathReportedR10(t *testing.T) {
	type ev struct {
		name  string
		alive bool
	}
	var mu sync.Mutex
	var evs []ev
	oa := fastOpts(t, "ex1")
	oa.OnMemberChange = func(s string, alive bool) {
		mu.Lock()
		evs = append(evs, ev{s, alive})
		mu.Unlock()
	}
	a := start(t, oa)
	b := start(t, fastOpts(t, "ex2", a.Seed()))
	c := start(t, fastOpts(t, "ex3", a.Seed()))
	eventually(t, 10*time.Second, "membership", func() bool { return aliveCount(a) == 3 && aliveCount(b) == 3 })
	c.kill()
	eventually(t, 15*time.Second, "ex3 reported dead", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(evs) > 0 && evs[len(evs)-1] == ev{"ex3", false}
	})
	for _, m := range a.Members() {
		if m.Name == "ex3" && m.Alive {
			t.Fatalf("ex3 still alive in %+v", a.Members())
		}
	}
	mu.Lock()
	for _, e := range evs {
		if e.name == "ex1" {
			t.Errorf("a node reported itself: %+v", evs)
		}
	}
	mu.Unlock()
}

package tracking

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// t0 is the tests' base event time. Event times do not affect retention,
// so a fixed date works.
var t0 = time.Date(2025, 7, 1, 10, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openLog(t testing.TB, dir string, opts ...Option) *Log {
	t.Helper()
	l, err := Open(dir, 0, quiet(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// route is one message's events on one server: arrival under a local
// queue id, a routing decision, a relay.
func route(server, qid, origin, mid string, at time.Time) []Event {
	return []Event{
		{Time: at, Server: server, Kind: Received, QueueID: qid, OriginID: origin, MessageID: mid},
		{Time: at.Add(time.Millisecond), Server: server, Kind: Routed, QueueID: qid, OriginID: origin, MessageID: mid,
			Recipient: "sales@contoso.example", Details: map[string]string{"rule": "local-rg", "store": "ex3-pub", "path": "ex1>ex3", "cost": "10"}},
		{Time: at.Add(2 * time.Millisecond), Server: server, Kind: Relayed, QueueID: qid, OriginID: origin, MessageID: mid,
			Recipient: "sales@contoso.example", Details: map[string]string{"next_hop": "ex3"}},
	}
}

func kinds(evs []Event) string {
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = e.Server + ":" + e.Kind
	}
	return strings.Join(s, " ")
}

// O4: a query by Message-ID (with or without <>), by the local queue id or
// by the origin queue id finds the same events.
func TestO4QueryByEachIDKind(t *testing.T) {
	l := openLog(t, t.TempDir(), WithServer("ex3"))
	defer l.Close()
	for _, e := range route("", "Q-LOCAL", "Q-ORIGIN", "<m1@contoso.example>", t0) {
		l.Append(e)
	}
	// Another message, which no query below may return.
	for _, e := range route("", "Q-OTHER", "Q-OTHER-ORIGIN", "<m2@contoso.example>", t0) {
		l.Append(e)
	}
	ctx := context.Background()
	for _, id := range []string{"<m1@contoso.example>", "m1@contoso.example", " <M1@Contoso.Example> ", "Q-LOCAL", "q-local", "Q-ORIGIN"} {
		evs, err := l.Query(ctx, id)
		if err != nil {
			t.Fatalf("Query(%q): %v", id, err)
		}
		if got, want := kinds(evs), "ex3:received ex3:routed ex3:relayed"; got != want {
			t.Errorf("Query(%q) = %s, want %s", id, got, want)
		}
		for _, e := range evs {
			if e.QueueID != "Q-LOCAL" {
				t.Errorf("Query(%q) returned event of queue %s", id, e.QueueID)
			}
		}
	}
	evs, err := l.Query(ctx, "Q-LOC") // a prefix of an id is not the id
	if err != nil || len(evs) != 0 {
		t.Errorf("Query(prefix) = %v, %v; want none", kinds(evs), err)
	}
	if _, err := l.Query(ctx, " <> "); err != ErrNoID {
		t.Errorf("Query(empty) err = %v, want ErrNoID", err)
	}
	evs, _ = l.Query(ctx, "Q-LOCAL")
	if d := evs[1].Details; d["rule"] != "local-rg" || d["cost"] != "10" || evs[1].Recipient != "sales@contoso.example" {
		t.Errorf("details not kept: %+v", evs[1])
	}
}

// O4: events come back in time order whatever the append order.
func TestO4QueryTimeOrder(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	for _, off := range []int{3, 1, 4, 0, 2} {
		l.Append(Event{Time: t0.Add(time.Duration(off) * time.Second), Server: "ex1", Kind: fmt.Sprint("k", off), QueueID: "Q"})
	}
	// Same time: append order is kept.
	l.Append(Event{Time: t0.Add(5 * time.Second), Server: "ex1", Kind: "k5a", QueueID: "Q"})
	l.Append(Event{Time: t0.Add(5 * time.Second), Server: "ex1", Kind: "k5b", QueueID: "Q"})
	evs, err := l.Query(context.Background(), "Q")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(evs), "ex1:k0 ex1:k1 ex1:k2 ex1:k3 ex1:k4 ex1:k5a ex1:k5b"; got != want {
		t.Errorf("order = %s, want %s", got, want)
	}
}

// Append fills in a missing time (from the clock) and server (the log's).
func TestAppendDefaults(t *testing.T) {
	clock := func() time.Time { return t0 }
	l := openLog(t, t.TempDir(), WithServer("ex2"), WithClock(clock))
	defer l.Close()
	l.Append(Event{Kind: Queued, QueueID: "Q"})
	evs, err := l.Query(context.Background(), "Q")
	if err != nil || len(evs) != 1 {
		t.Fatalf("Query = %v, %v", evs, err)
	}
	if !evs[0].Time.Equal(t0) || evs[0].Server != "ex2" {
		t.Errorf("event = %+v, want time %v server ex2", evs[0], t0)
	}
}

// Retention: the event and its index entries carry a badger TTL of the
// retention, counted from when they are written (not from the event's own
// time, which may come from a fake or skewed clock).
func TestRetentionTTL(t *testing.T) {
	const retention = 7 * 24 * time.Hour
	l, err := Open(t.TempDir(), retention, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := time.Now()
	l.Append(Event{Time: t0.Add(-30 * 24 * time.Hour), Kind: Received, QueueID: "Q", MessageID: "<m@x>"})
	evs, _ := l.Query(context.Background(), "Q")
	after := time.Now()
	if len(evs) != 1 {
		t.Fatalf("event with an old time missing: %v", evs)
	}
	lo, hi := uint64(before.Add(retention).Unix()), uint64(after.Add(retention).Unix())
	err = l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			if got := it.Item().ExpiresAt(); got < lo || got > hi {
				t.Errorf("key %q expires at %d, want in [%d, %d]", it.Item().Key(), got, lo, hi)
			}
		}
		if n != 3 {
			t.Errorf("%d keys, want 3 (event, message-id and queue-id index)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Retention, for real: with a one-second retention the events disappear.
func TestRetentionExpires(t *testing.T) {
	l, err := Open(t.TempDir(), time.Second, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Append(Event{Kind: Received, QueueID: "Q"})
	ctx := context.Background()
	if evs, _ := l.Query(ctx, "Q"); len(evs) != 1 {
		t.Fatalf("event not there before expiry: %v", evs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := l.Query(ctx, "Q")
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("event still there 5s after a 1s retention")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close writes every buffered event before closing.
func TestCloseFlushes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	const n = 2000
	for i := range n {
		l.Append(Event{Time: t0.Add(time.Duration(i)), Kind: Received, QueueID: "Q", MessageID: fmt.Sprintf("<m%d@x>", i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Query(context.Background(), "Q"); err != ErrClosed {
		t.Errorf("Query after Close err = %v, want ErrClosed", err)
	}
	l = openLog(t, dir)
	defer l.Close()
	evs, err := l.Query(context.Background(), "Q")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Errorf("%d events after reopen, want %d", len(evs), n)
	}
}

// A process that dies without Close keeps the events it had flushed.
func TestCrashReopenKeepsFlushedEvents(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), "PFROUTER_TRACKING_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("helper did not crash as planned: %v\n%s", err, out)
	}
	l := openLog(t, dir)
	defer l.Close()
	evs, err := l.Query(context.Background(), "<crash@contoso.example>")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 100 {
		t.Errorf("%d events after crash, want 100", len(evs))
	}
}

// TestCrashHelper is the crashing process of the test above.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv("PFROUTER_TRACKING_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	l := openLog(t, dir)
	for i := range 100 {
		l.Append(Event{Time: t0.Add(time.Duration(i)), Kind: Received, QueueID: fmt.Sprint("Q", i), MessageID: "<crash@contoso.example>"})
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.Exit(3) // no Close
}

// A full buffer makes Append drop (and count) rather than block.
func TestAppendDropsWhenFull(t *testing.T) {
	// No writer goroutine: the buffer of one never drains.
	l := &Log{ch: make(chan item, 1), quit: make(chan struct{}), done: make(chan struct{}), now: time.Now, logger: quiet()}
	l.Append(Event{Kind: Received, QueueID: "a"})
	done := make(chan struct{})
	go func() {
		l.Append(Event{Kind: Received, QueueID: "b"})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Append blocked on a full buffer")
	}
	if l.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", l.Dropped())
	}
}

func TestAppendAfterCloseIsDropped(t *testing.T) {
	l := openLog(t, t.TempDir())
	l.Close()
	l.Append(Event{Kind: Received, QueueID: "a"})
	if l.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", l.Dropped())
	}
	if err := l.Flush(context.Background()); err != ErrClosed {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
}

func BenchmarkAppend(b *testing.B) {
	l := openLog(b, b.TempDir(), WithServer("ex1"))
	defer l.Close()
	e := route("", "Q1", "Q0", "<bench@contoso.example>", t0)[1]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Time = t0.Add(time.Duration(i))
		l.Append(e)
	}
	b.StopTimer()
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.Dropped()), "dropped")
}

func BenchmarkAppendParallel(b *testing.B) {
	l := openLog(b, b.TempDir(), WithServer("ex1"))
	defer l.Close()
	e := route("", "Q1", "Q0", "<bench@contoso.example>", t0)[1]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Append(e)
		}
	})
	b.StopTimer()
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.Dropped()), "dropped")
}

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openT(t *testing.T, dir string) *Queue {
	t.Helper()
	q, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func bodyFor(id string, n int) []byte {
	return bytes.Repeat([]byte(id[len(id)-4:]), n/4+1)[:n]
}

// S2: every Put that returned nil, from many concurrent sessions sharing
// group commits, is on disk after Close and Open, with its own envelope
// and body (no mix-up between the messages of one batch).
func TestS2ConcurrentPutsDurableAfterReopen(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	var mu sync.Mutex
	want := map[string]int{}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				id := q.NewID()
				n := 100 + (g*25+i)*97%20000 // some under, some over the value-log threshold
				if err := q.Put(context.Background(), id, []byte("env-"+id), bodyFor(id, n)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[id] = n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, dir)
	defer q.Close()
	seen := 0
	err := q.Scan(func(id string, env []byte) error {
		n, ok := want[id]
		if !ok {
			return fmt.Errorf("unexpected id %s", id)
		}
		if string(env) != "env-"+id {
			return fmt.Errorf("%s: envelope %q", id, env)
		}
		b, err := q.Body(id)
		if err != nil || !bytes.Equal(b, bodyFor(id, n)) {
			return fmt.Errorf("%s: body of %d bytes, %v", id, len(b), err)
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) || seen != 800 {
		t.Fatalf("%d queued after reopen, want %d", seen, len(want))
	}
}

// S2: a Put that returned nil just before Close survives the reopen, and
// writes after Close fail instead of being lost silently.
func TestS2PutThenCloseSurvives(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	id := q.NewID()
	if err := q.Put(context.Background(), id, []byte("e"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.Put(context.Background(), q.NewID(), []byte("e"), []byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if err := q.Delete(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete after Close: %v", err)
	}
	q = openT(t, dir)
	defer q.Close()
	if b, err := q.Body(id); err != nil || string(b) != "b" {
		t.Fatalf("body after reopen: %q, %v", b, err)
	}
}

// S2: when a batch's commit fails, every caller in it gets the error and
// none of its messages is visible, then or after a reopen. The first
// commit is held until 19 more Puts are waiting, so they form one batch.
func TestS2BatchFailureAnswersEveryCaller(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	injected := errors.New("injected disk failure")
	var batches atomic.Int32
	held := make(chan struct{})
	q.c.beforeCommit = func() error {
		if batches.Add(1) == 1 {
			close(held) // the first Put's batch is committing alone
			deadline := time.Now().Add(30 * time.Second)
			for len(q.c.in) < 19 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		return injected
	}
	errs := make(chan error, 20)
	put := func() { errs <- q.Put(context.Background(), q.NewID(), []byte("e"), make([]byte, 10240)) }
	go put()
	<-held
	for range 19 {
		go put()
	}
	for range 20 {
		if err := <-errs; !errors.Is(err, injected) {
			t.Fatalf("Put in a failed batch returned %v", err)
		}
	}
	if n := batches.Load(); n != 2 {
		t.Fatalf("%d batches for 20 Puts, want 2 (1 held, then 19 together)", n)
	}
	q.c.beforeCommit = nil
	q.Close()
	q = openT(t, dir)
	defer q.Close()
	n := 0
	q.Scan(func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d messages of failed batches visible", n)
	}
}

// Requests of one batch apply in order: a Delete removes envelope and all
// chunks of a large message in one transaction, and a SetEnvelope after it
// reports ErrNotFound.
func TestDeleteAndSetEnvelopeThroughCommitter(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	defer q.Close()
	big := bytes.Repeat([]byte("x"), 3<<20) // chunked: written outside the committer
	bigID, smallID := q.NewID(), q.NewID()
	if err := q.Put(context.Background(), bigID, []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(context.Background(), smallID, []byte("small"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, id := range []string{bigID, smallID} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.Delete(id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range []string{bigID, smallID} {
		if _, err := q.Body(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s body after Delete: %v", id, err)
		}
		if _, err := q.Envelope(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s envelope after Delete: %v", id, err)
		}
		if err := q.SetEnvelope(id, []byte("again")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetEnvelope after Delete: %v", err)
		}
	}
	if err := q.Delete("never-queued"); err != nil {
		t.Fatalf("Delete unknown: %v", err)
	}
}

// Issue 10 item 4: a Put whose context ends while its commit is under way
// waits for that commit and reports it: nil, and the message is queued. A
// Put whose context ended before the hand-over writes nothing.
func TestPutAwaitsCommitAfterContextEnds(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	inCommit, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	q.c.beforeCommit = func() error { once.Do(func() { close(inCommit) }); <-release; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	id := q.NewID()
	done := make(chan error, 1)
	go func() { done <- q.Put(ctx, id, []byte("e"), []byte("b")) }()
	select {
	case <-inCommit:
	case <-time.After(10 * time.Second):
		t.Fatal("the Put never reached the commit")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Put returned %v while its commit was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put of a committed message returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Put did not return after its commit")
	}
	if _, err := q.Body(id); err != nil {
		t.Fatalf("the Put was reported but its message is not queued: %v", err)
	}

	gone, cancelled := q.NewID(), context.Background()
	cctx, ccancel := context.WithCancel(cancelled)
	ccancel()
	if err := q.Put(cctx, gone, []byte("e"), []byte("b")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a context ended before the hand-over: %v", err)
	}
	q.c.beforeCommit = nil
	q.Close()
	q = openT(t, dir)
	defer q.Close()
	var ids []string
	q.Scan(func(id string, _ []byte) error { ids = append(ids, id); return nil })
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("after reopen the queue holds %v, want just %s", ids, id)
	}
}

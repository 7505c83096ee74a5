package store

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// holdMailbox takes ref's mailbox lock so that deliveries pile up in its
// queue, waits until n are queued, and returns the func that lets them go:
// the first to get the lock then commits all n in one group.
func holdMailbox(t *testing.T, s *Store, ref MailboxRef, n int) (waitQueued func(), release func()) {
	t.Helper()
	rec, err := s.view(ref.normalize())
	if err != nil {
		t.Fatal(err)
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	q := s.addQueue(rec.ID)
	waitQueued = func() {
		deadline := time.Now().Add(20 * time.Second)
		for {
			q.mu.Lock()
			got := len(q.reqs)
			q.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries queued, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return waitQueued, mu.Unlock
}

// Idempotent delivery (S2, redelivery after a crash): concurrent Delivers
// of the same ID to one mailbox, in one group commit, store one copy and
// all report its UID.
func TestS2ConcurrentDuplicateDeliveriesOneCopy(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "PUB1", Name: "/Sales"}
	if err := s.CreateMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	const ids, copies = 5, 4
	waitQueued, release := holdMailbox(t, s, ref, ids*copies)
	type res struct {
		id  int
		uid uint32
		dup bool
		err error
	}
	out := make(chan res, ids*copies)
	for i := range ids * copies {
		go func() {
			id := i % ids
			uid, dup, err := s.Deliver(ctx, Delivery{Store: "PUB1", Folder: "/Sales", ID: fmt.Sprint("origin-", id), Body: msg(fmt.Sprint(id))})
			out <- res{id, uid, dup, err}
		}()
	}
	waitQueued()
	release()
	uidOf := map[int]uint32{}
	fresh := map[int]int{}
	for range ids * copies {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		if u, ok := uidOf[r.id]; ok && u != r.uid {
			t.Fatalf("delivery id %d got UIDs %d and %d", r.id, u, r.uid)
		}
		uidOf[r.id] = r.uid
		if !r.dup {
			fresh[r.id]++
		}
	}
	for id := range ids {
		if fresh[id] != 1 {
			t.Fatalf("delivery id %d stored %d times", id, fresh[id])
		}
	}
	list, err := s.Messages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != ids {
		t.Fatalf("%d messages stored, want %d", len(list), ids)
	}
	for i, m := range list {
		if m.UID != uint32(i+1) {
			t.Fatalf("UIDs %v, want 1..%d", list, ids)
		}
	}
	// Across group commits too: a later redelivery is a duplicate.
	if uid, dup, err := s.Deliver(ctx, Delivery{Store: "PUB1", Folder: "/Sales", ID: "origin-3", Body: msg("3")}); err != nil || !dup || uid != uidOf[3] {
		t.Fatalf("redelivery = %d, %v, %v; want %d, true", uid, dup, err, uidOf[3])
	}
}

// Concurrent deliveries and appends to one mailbox get unique, consecutive
// UIDs; UIDNEXT and UIDVALIDITY survive a reopen; bodies (including a
// chunked one) are not mixed up; a subscriber is woken up to the last UID.
func TestConcurrentDeliveriesConsecutiveUIDs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	if err := s.EnsureMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	before, err := s.Status(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	events, cancel, err := s.Subscribe(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	const workers, each = 32, 10
	big := bytes.Repeat([]byte("0123456789"), (chunkSize*2)/10+7) // three chunks
	bodyOf := func(w, i int) []byte {
		if w == 0 && i == 0 {
			return big
		}
		return msg(fmt.Sprintf("w%d-%d", w, i))
	}
	var mu sync.Mutex
	got := map[uint32][]byte{}
	appended := map[uint32]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var uid uint32
				var err error
				if w%4 == 3 {
					uid, _, err = s.Append(ctx, ref, bodyOf(w, i), AppendOptions{Flags: []string{`\Seen`}})
				} else {
					uid, _, err = s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: fmt.Sprintf("w%d-%d", w, i), Body: bodyOf(w, i)})
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if _, ok := got[uid]; ok {
					t.Errorf("UID %d given twice", uid)
				}
				got[uid] = bodyOf(w, i)
				appended[uid] = w%4 == 3
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	const n = workers * each
	// Events are wake-ups that may be dropped when the subscriber is
	// behind, but one is pending after the last change: a subscriber that
	// re-reads on each event sees every message.
	select {
	case ev := <-events:
		if ev.Kind != EventExists {
			t.Fatalf("event %+v, want EventExists", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no EventExists after 320 deliveries")
	}
	if st, err := s.Status(ctx, ref); err != nil || st.UIDNext != before.UIDNext+n {
		t.Fatalf("status after an event: %+v, %v", st, err)
	}
	s.Close()

	s = openStore(t, dir)
	defer s.Close()
	st, err := s.Status(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.UIDNext != before.UIDNext+n || st.UIDValidity != before.UIDValidity || st.Messages != n {
		t.Fatalf("after reopen %+v, want UIDNext %d, UIDValidity %d, %d messages", st, before.UIDNext+n, before.UIDValidity, n)
	}
	list, err := s.Messages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]uint32, 0, n)
	for _, m := range list {
		uids = append(uids, m.UID)
	}
	for i, u := range uids {
		if u != before.UIDNext+uint32(i) {
			t.Fatalf("UIDs not consecutive: %v", uids)
		}
	}
	for uid, want := range got {
		b, err := s.Body(ctx, ref, uid)
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("UID %d: body of %d bytes (%v), want %d bytes", uid, len(b), err, len(want))
		}
	}
	for _, m := range list {
		if want := appended[m.UID]; HasFlag(m.Flags, `\Seen`) != want {
			t.Fatalf("UID %d flags %v, appended with \\Seen: %v", m.UID, m.Flags, want)
		}
	}
}

package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// onDisk reports whether id's envelope is committed in the database,
// bypassing the lazy-delete view.
func onDisk(t *testing.T, q *Queue, id string) bool {
	t.Helper()
	err := q.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(envKey(id))
		return err
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// DeleteLater hides the message at once, and its removal is committed
// without anyone waiting: with the next batch or after lazyDelay.
func TestDeleteLaterHiddenAtOnceCommittedSoon(t *testing.T) {
	q := openT(t, t.TempDir())
	defer q.Close()
	ids := []string{q.NewID(), q.NewID()}
	for _, id := range ids {
		if err := q.Put(context.Background(), id, []byte("env"), bodyFor(id, 10<<10)); err != nil {
			t.Fatal(err)
		}
	}
	q.DeleteLater(ids[0])
	if _, err := q.Envelope(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Envelope after DeleteLater: %v, want ErrNotFound", err)
	}
	if _, err := q.Body(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body after DeleteLater: %v, want ErrNotFound", err)
	}
	var seen []string
	q.Scan(func(id string, _ []byte) error { seen = append(seen, id); return nil })
	if len(seen) != 1 || seen[0] != ids[1] {
		t.Fatalf("Scan after DeleteLater: %v, want only %s", seen, ids[1])
	}
	deadline := time.Now().Add(5 * time.Second)
	for onDisk(t, q, ids[0]) {
		if time.Now().After(deadline) {
			t.Fatal("lazy delete not committed within 5s of an idle queue")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !onDisk(t, q, ids[1]) {
		t.Fatal("the other message was removed too")
	}
	if q.c.deleting(ids[0]) {
		t.Fatal("committed lazy delete still pending")
	}
}

// S2 side: lazy deletes waiting at Close are committed by Close, and many
// of them (past one batch) all land.
func TestDeleteLaterCommittedByClose(t *testing.T) {
	dir := t.TempDir()
	q := openT(t, dir)
	var ids []string
	for range lazyPerBatch + 50 {
		id := q.NewID()
		if err := q.Put(context.Background(), id, []byte("env"), []byte("body")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	keep := q.NewID()
	if err := q.Put(context.Background(), keep, []byte("env"), bodyFor(keep, 2<<20)); err != nil { // chunked
		t.Fatal(err)
	}
	for _, id := range ids {
		q.DeleteLater(id)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, dir)
	defer q.Close()
	n := 0
	q.Scan(func(id string, _ []byte) error {
		if id != keep {
			t.Errorf("%s still queued after DeleteLater and Close", id)
		}
		n++
		return nil
	})
	if n != 1 {
		t.Fatalf("%d messages after reopen, want 1", n)
	}
	if b, err := q.Body(keep); err != nil || len(b) != 2<<20 {
		t.Fatalf("chunked body: %d bytes, %v", len(b), err)
	}
	// A chunked body is removed whole by Delete (every chunk).
	if err := q.Delete(keep); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Body(keep); !errors.Is(err, ErrNotFound) {
		t.Fatalf("chunked body after Delete: %v", err)
	}
}

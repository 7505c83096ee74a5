package store

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ageDedup rewrites the dedup record of delivery id in ref as if written
// at at (raw: a nil at writes the 4-byte record of older versions).
func ageDedup(t *testing.T, s *Store, ref MailboxRef, id string, at *time.Time) {
	t.Helper()
	rec, err := s.view(ref)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(dedupKey(rec.ID, id))
		if err != nil {
			return err
		}
		var uid uint32
		if err := item.Value(func(b []byte) error { uid, _ = parseDedup(b); return nil }); err != nil {
			return err
		}
		if at == nil {
			return txn.Set(dedupKey(rec.ID, id), binary.BigEndian.AppendUint32(nil, uid))
		}
		return txn.Set(dedupKey(rec.ID, id), dedupValue(uid, *at))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countDedup(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("d/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Delivery dedup records expire after the retention (they grew forever),
// while a redelivery within it (a relay retried by a peer, the queue
// delivering again after a crash) is still stored once.
func TestExpireDeliveriesKeepsTheRetryWindow(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	const retention = 72 * time.Hour
	inbox := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	folder := MailboxRef{Store: "PUB1", Name: "/Sales"}
	deliver := func(ref MailboxRef, id string) (uint32, bool) {
		t.Helper()
		d := Delivery{Store: ref.Store, User: ref.User, Folder: ref.Name, ID: id, Class: "IPM.Post", Body: msg(id)}
		if ref.User != "" {
			d.Folder = ""
		}
		uid, dup, err := s.Deliver(ctx, d)
		if err != nil {
			t.Fatalf("Deliver %s to %s: %v", id, ref, err)
		}
		return uid, dup
	}
	for _, ref := range []MailboxRef{inbox, folder} {
		for _, id := range []string{"old", "recent", "legacy"} {
			deliver(ref, id)
		}
		old := time.Now().Add(-retention - time.Hour)
		ageDedup(t, s, ref, "old", &old)
		ageDedup(t, s, ref, "legacy", nil)
	}
	if n := countDedup(t, s); n != 6 {
		t.Fatalf("%d dedup records before the sweep, want 6", n)
	}
	res, err := s.ExpireDeliveries(ctx, time.Now().Add(-retention))
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 2 || res.Stamped != 2 {
		t.Fatalf("sweep = %+v, want 2 removed (old), 2 stamped (legacy)", res)
	}
	if n := countDedup(t, s); n != 4 {
		t.Fatalf("%d dedup records after the sweep, want 4", n)
	}
	for _, ref := range []MailboxRef{inbox, folder} {
		// Within the window: still one copy, the first uid answered.
		for _, id := range []string{"recent", "legacy"} {
			if uid, dup := deliver(ref, id); !dup || uid == 0 {
				t.Fatalf("redelivery of %s to %s: uid %d dup %v, want a duplicate", id, ref, uid, dup)
			}
		}
		// Past the window the record is gone: the id is new again.
		if _, dup := deliver(ref, "old"); dup {
			t.Fatalf("%s: the expired record of old still deduplicates", ref)
		}
	}
	// A second sweep removes nothing recent, and the stamped legacy
	// records expire one retention later.
	if res, err := s.ExpireDeliveries(ctx, time.Now().Add(-retention)); err != nil || res.Removed != 0 || res.Stamped != 0 {
		t.Fatalf("second sweep = %+v, %v; want nothing", res, err)
	}
	if res, err := s.ExpireDeliveries(ctx, time.Now().Add(time.Minute)); err != nil || res.Removed != 6 {
		t.Fatalf("sweep a retention later = %+v, %v; want 6 removed", res, err)
	}
}

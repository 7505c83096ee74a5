package store

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// logSize counts a replica's change log entries and tombstones.
func logSize(t *testing.T, s *Store, ref MailboxRef) (changes, tombstones int) {
	t.Helper()
	rec, err := s.view(ref)
	if err != nil {
		t.Fatal(err)
	}
	count := func(p byte) int {
		n := 0
		s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: idKey(p, rec.ID, 0)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		return n
	}
	return count('g'), count('t')
}

// Issue 12, compaction: what every replica acknowledged leaves the change
// log (deletes with their tombstones and the deleted posts' adds, flag
// changes a later one replaced); replicas that cover the horizon go on as
// before, while one that comes back older (here C, which last synced
// before the deletes, as a data directory restored from an old copy) or
// is new gets a resync instead of changes, deletes what was deleted while
// it was away, and converges; its stale posts never come back elsewhere.
func TestCompactionKeepsEveryReplicaCorrect(t *testing.T) {
	a, b, c, d := openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir())
	for _, s := range []*Store{a, b, c, d} {
		defer s.Close()
	}
	ra, rb, rc, rd := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "B", Name: "/F"}, MailboxRef{Store: "C", Name: "/F"}, MailboxRef{Store: "D", Name: "/F"}
	for i := range 6 {
		if _, _, err := a.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: fmt.Sprint(i), Class: "IPM.Post", Body: msg(fmt.Sprint("post ", i))}); err != nil {
			t.Fatal(err)
		}
	}
	syncOnce(t, a, "A", b, "B", "/F", 100)
	syncOnce(t, a, "A", c, "C", "/F", 100) // C's last sync: its "old copy"
	am, _ := a.Messages(ctx, ra)
	if _, err := a.Expunge(ctx, ra, []uint32{am[0].UID, am[1].UID}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"$1", "$2"} {
		if _, err := a.SetFlags(ctx, ra, "u", []uint32{am[2].UID}, FlagsSet, []string{f}); err != nil {
			t.Fatal(err)
		}
	}
	syncOnce(t, a, "A", b, "B", "/F", 100)
	before, tombs := logSize(t, a, ra)
	ka, _ := a.CNSetOf(ctx, ra)
	kb, _ := b.CNSetOf(ctx, rb)
	res, err := a.Compact(ctx, ra, ka.Intersect(kb))
	if err != nil {
		t.Fatal(err)
	}
	after, tombsAfter := logSize(t, a, ra)
	// 2 deletes, their 2 adds, 1 flag change replaced: 4 adds and $2 stay.
	if res.Changes != 3 || res.Tombstones != 2 || before-after != 5 || after != 5 || tombs != 2 || tombsAfter != 0 {
		t.Fatalf("compaction %+v: log %d -> %d entries, tombstones %d -> %d; want 5 entries and no tombstone left", res, before, after, tombs, tombsAfter)
	}
	// B covers the horizon: nothing to resync, nothing new.
	if r := syncOnce(t, a, "A", b, "B", "/F", 100); r != (ApplyResult{}) {
		t.Fatalf("B after compaction: %+v, want nothing", r)
	}
	// A pulls from C before C resyncs: C's stale copies of the deleted
	// posts are not sent (A's CN set holds their adds).
	syncOnce(t, c, "C", a, "A", "/F", 100)
	if n := len(contents(t, a, ra)); n != 4 {
		t.Fatalf("A holds %d posts after pulling from the stale C, want 4 (a deleted post came back)", n)
	}
	// C pulls from A: resync (the deletes are gone from A's log), then
	// the rest; D is new and gets everything.
	if r := syncOnce(t, a, "A", c, "C", "/F", 100); r.Deleted != 2 {
		t.Fatalf("C's resync deleted %d posts, want the 2 deleted while it was away", r.Deleted)
	}
	syncOnce(t, a, "A", d, "D", "/F", 2)
	want := contents(t, a, ra)
	for _, r := range []struct {
		s   *Store
		ref MailboxRef
	}{{b, rb}, {c, rc}, {d, rd}} {
		if got := contents(t, r.s, r.ref); !maps.Equal(got, want) {
			t.Fatalf("%s holds %d posts, A %d: not converged after compaction", r.ref, len(got), len(want))
		}
		ms, _ := r.s.MessagesAs(ctx, r.ref, "u")
		if !slices.ContainsFunc(ms, func(m MessageInfo) bool { return slices.Equal(m.Flags, []string{"$2"}) }) {
			t.Fatalf("%s lost u's winning flags", r.ref)
		}
		if n, _ := a.Missing(ctx, ra, func() CNSet { k, _ := r.s.CNSetOf(ctx, r.ref); return k }()); n != 0 {
			t.Fatalf("%s still misses %d changes of A", r.ref, n)
		}
	}
	// A second resync is not asked for: C covers the horizon now.
	kc, _ := c.CNSetOf(ctx, rc)
	if bt, _ := a.ChangesSince(ctx, ra, kc, 1<<20, 100); bt.Resync {
		t.Fatal("C is asked to resync again")
	}
}

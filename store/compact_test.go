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

// postInto delivers n posts ("post 0" ...) into folder of store st.
func postInto(t *testing.T, s *Store, st, folder string, n int) {
	t.Helper()
	for i := range n {
		if _, _, err := s.Deliver(ctx, Delivery{Store: st, Folder: folder, ID: fmt.Sprint(i), Class: "IPM.Post", Body: msg(fmt.Sprint("post ", i))}); err != nil {
			t.Fatal(err)
		}
	}
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
	postInto(t, a, "A", "/F", 6)
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
	if r := syncOnce(t, a, "A", b, "B", "/F", 100); r.ApplyResult != (ApplyResult{}) {
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

// Issue 12 (resync in pages): a replica restored from an old copy lacks
// deletions spread over the whole folder; with a resync page of 3 log
// entries the resync takes many pages, each deleting what was deleted in
// its stretch, and the replica ends with exactly the posts the source
// holds. A new replica, paged the same way, gets everything.
func TestPagedResyncDeletesAcrossPages(t *testing.T) {
	a, b, c, d := openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir())
	for _, s := range []*Store{a, b, c, d} {
		defer s.Close()
	}
	ra, rb, rc, rd := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "B", Name: "/F"}, MailboxRef{Store: "C", Name: "/F"}, MailboxRef{Store: "D", Name: "/F"}
	const posts = 30
	postInto(t, a, "A", "/F", posts)
	syncOnce(t, a, "A", b, "B", "/F", 100)
	syncOnce(t, a, "A", c, "C", "/F", 100) // C's old copy
	am, _ := a.Messages(ctx, ra)
	var gone []uint32
	for i := 0; i < posts; i += 3 { // every third post, first to last
		gone = append(gone, am[i].UID)
	}
	if _, err := a.Expunge(ctx, ra, gone); err != nil {
		t.Fatal(err)
	}
	syncOnce(t, a, "A", b, "B", "/F", 100)
	ka, _ := a.CNSetOf(ctx, ra)
	kb, _ := b.CNSetOf(ctx, rb)
	if _, err := a.Compact(ctx, ra, ka.Intersect(kb)); err != nil {
		t.Fatal(err)
	}
	r := syncOnce(t, a, "A", c, "C", "/F", 3)
	if r.Deleted != len(gone) || r.ResyncPages < (posts-len(gone))/3 {
		t.Fatalf("C's resync: %d pages deleted %d posts; want %d deleted over at least %d pages (3 log entries each)", r.ResyncPages, r.Deleted, len(gone), (posts-len(gone))/3)
	}
	if cur, err := c.ResyncCursor(ctx, rc, "A"); err != nil || cur != nil {
		t.Fatalf("resync cursor left after the last page: %+v, %v", cur, err)
	}
	rd2 := syncOnce(t, a, "A", d, "D", "/F", 3)
	if rd2.ResyncPages < 2 {
		t.Fatalf("the new replica's resync took %d pages", rd2.ResyncPages)
	}
	want := contents(t, a, ra)
	if len(want) != posts-len(gone) {
		t.Fatalf("A holds %d posts", len(want))
	}
	for _, x := range []struct {
		s   *Store
		ref MailboxRef
	}{{c, rc}, {d, rd}} {
		if got := contents(t, x.s, x.ref); !maps.Equal(got, want) {
			t.Fatalf("%s holds %d posts, A %d", x.ref, len(got), len(want))
		}
		k, _ := x.s.CNSetOf(ctx, x.ref)
		if bt, _ := a.ChangesSince(ctx, ra, k, 1<<20, 100); bt.Resync || len(bt.Changes) > 0 {
			t.Fatalf("%s still gets a resync or changes: %+v", x.ref, bt)
		}
	}
}

// A resync interrupted between pages (the receiver restarted) resumes
// from its durable cursor, and one whose source compacted further meanwhile
// (a new horizon) starts again from the beginning and still ends right.
func TestPagedResyncResumesAndRestarts(t *testing.T) {
	a, b, c := openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir())
	for _, s := range []*Store{a, b, c} {
		defer s.Close()
	}
	ra, rb, rc := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "B", Name: "/F"}, MailboxRef{Store: "C", Name: "/F"}
	postInto(t, a, "A", "/F", 12)
	syncOnce(t, a, "A", b, "B", "/F", 100)
	syncOnce(t, a, "A", c, "C", "/F", 100)
	compact := func(uids ...uint32) {
		t.Helper()
		if _, err := a.Expunge(ctx, ra, uids); err != nil {
			t.Fatal(err)
		}
		syncOnce(t, a, "A", b, "B", "/F", 100)
		ka, _ := a.CNSetOf(ctx, ra)
		kb, _ := b.CNSetOf(ctx, rb)
		if _, err := a.Compact(ctx, ra, ka.Intersect(kb)); err != nil {
			t.Fatal(err)
		}
	}
	am, _ := a.Messages(ctx, ra)
	compact(am[1].UID, am[10].UID)
	// Two pages of C's resync, then a new compaction at A.
	for range 2 {
		have, _ := c.CNSetOf(ctx, rc)
		cur, _ := c.ResyncCursor(ctx, rc, "A")
		bt, err := a.ChangesSinceFrom(ctx, ra, have, cur, 1<<20, 100, 2)
		if err != nil || !bt.Resync || bt.ResyncLast {
			t.Fatalf("page: resync %v last %v, %v", bt.Resync, bt.ResyncLast, err)
		}
		if _, err := c.ApplyResyncPage(ctx, rc, "A", bt.Page()); err != nil {
			t.Fatal(err)
		}
	}
	if cur, _ := c.ResyncCursor(ctx, rc, "A"); cur == nil || cur.After.IsZero() {
		t.Fatalf("no durable cursor mid-resync: %+v", cur)
	}
	compact(am[0].UID, am[6].UID) // am[0] lies in a stretch C already checked
	r := syncOnce(t, a, "A", c, "C", "/F", 2)
	if got, want := contents(t, c, rc), contents(t, a, ra); !maps.Equal(got, want) || len(want) != 8 {
		t.Fatalf("C holds %d posts, A %d (want 8): %+v", len(got), len(want), r)
	}
}

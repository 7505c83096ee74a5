package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
)

type syncResult struct {
	ApplyResult
	ResyncPages int
}

// syncOnce pulls what dst lacks of folder from src, batch by batch, as the
// replication service does.
func syncOnce(t *testing.T, src *Store, srcStore string, dst *Store, dstStore, folder string, maxChanges int) syncResult {
	t.Helper()
	var total syncResult
	for range 1000 {
		have, err := dst.CNSetOf(ctx, MailboxRef{Store: dstStore, Name: folder})
		if err != nil {
			t.Fatal(err)
		}
		cur, err := dst.ResyncCursor(ctx, MailboxRef{Store: dstStore, Name: folder}, srcStore)
		if err != nil {
			t.Fatal(err)
		}
		// Resync pages as small as the batches.
		b, err := src.ChangesSinceFrom(ctx, MailboxRef{Store: srcStore, Name: folder}, have, cur, 1<<20, maxChanges, maxChanges)
		if err != nil {
			t.Fatal(err)
		}
		if b.Resync {
			total.ResyncPages++
			n, err := dst.ApplyResyncPage(ctx, MailboxRef{Store: dstStore, Name: folder}, srcStore, b.Page())
			if err != nil {
				t.Fatal(err)
			}
			total.Deleted += n
			continue
		}
		res, err := dst.Apply(ctx, MailboxRef{Store: dstStore, Name: folder}, b)
		if err != nil {
			t.Fatal(err)
		}
		total.Added += res.Added
		total.Deleted += res.Deleted
		total.Flagged += res.Flagged
		total.Skipped += res.Skipped
		if !b.More {
			return total
		}
	}
	t.Fatal("sync did not finish")
	return total
}

// contents maps each post's item to its body, as a replica holds it.
func contents(t *testing.T, s *Store, ref MailboxRef) map[ChangeID]string {
	t.Helper()
	items, err := s.ItemsOf(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := map[ChangeID]string{}
	for uid, item := range items {
		b, err := s.Body(ctx, ref, uid)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[item]; dup {
			t.Fatalf("item %s stored twice", item)
		}
		out[item] = string(b)
	}
	return out
}

// Posts, appends, expunges and per-user flags of one replica reach the
// other through ChangesSince/Apply, in batches, and a batch applied twice
// changes nothing.
func TestReplicateChangesBetweenStores(t *testing.T) {
	a, b := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer a.Close()
	defer b.Close()
	ra, rb := MailboxRef{Store: "A", Name: "/Sales"}, MailboxRef{Store: "B", Name: "/Sales"}
	for i := range 7 {
		if _, _, err := a.Deliver(ctx, Delivery{Store: "A", Folder: "/Sales", ID: fmt.Sprint("q", i), Class: "IPM.Post", Body: msg(fmt.Sprint("post ", i))}); err != nil {
			t.Fatal(err)
		}
	}
	big := append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("y"), 2*chunkSize+5)...)
	if _, _, err := a.Append(ctx, ra, big, AppendOptions{Viewer: "alice", Flags: []string{`\Seen`}}); err != nil {
		t.Fatal(err)
	}
	res := syncOnce(t, a, "A", b, "B", "/Sales", 3)
	if res.Added != 8 || res.Flagged != 1 {
		t.Fatalf("first sync %+v, want 8 added, 1 flag change", res)
	}
	if ca, cb := contents(t, a, ra), contents(t, b, rb); !maps.Equal(ca, cb) || len(cb) != 8 {
		t.Fatalf("replicas differ: A %d items, B %d", len(ca), len(cb))
	}
	bm, _ := b.MessagesAs(ctx, rb, "alice")
	if !HasFlag(bm[len(bm)-1].Flags, `\Seen`) {
		t.Fatalf("alice's \\Seen on the appended post did not replicate: %v", bm[len(bm)-1].Flags)
	}
	// Idempotent: the same batch again adds nothing.
	b0, err := a.ChangesSince(ctx, ra, CNSet{}, 1<<30, 1000)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Apply(ctx, rb, b0)
	if err != nil || again.Added != 0 || again.Flagged != 0 {
		t.Fatalf("reapplied batch: %+v, %v", again, err)
	}
	if n, _ := b.Messages(ctx, rb); len(n) != 8 {
		t.Fatalf("B holds %d messages after a replayed batch, want 8", len(n))
	}
	// B expunges one post and bob flags another; both reach A.
	if _, err := b.Expunge(ctx, rb, []uint32{bm[0].UID}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetFlags(ctx, rb, "bob", []uint32{bm[1].UID}, FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	res = syncOnce(t, b, "B", a, "A", "/Sales", 100)
	if res.Deleted != 1 || res.Flagged != 1 {
		t.Fatalf("sync back %+v, want 1 delete, 1 flag change", res)
	}
	if ca, cb := contents(t, a, ra), contents(t, b, rb); !maps.Equal(ca, cb) || len(ca) != 7 {
		t.Fatalf("after delete: A %d items, B %d", len(ca), len(cb))
	}
	am, _ := a.MessagesAs(ctx, ra, "bob")
	if !slices.ContainsFunc(am, func(m MessageInfo) bool { return HasFlag(m.Flags, `\Flagged`) }) {
		t.Fatal("bob's flag did not reach A")
	}
	// Both in sync: nothing missing either way.
	ka, _ := a.CNSetOf(ctx, ra)
	kb, _ := b.CNSetOf(ctx, rb)
	if n, _ := a.Missing(ctx, ra, kb); n != 0 {
		t.Fatalf("B misses %d changes of A", n)
	}
	if n, _ := b.Missing(ctx, rb, ka); n != 0 {
		t.Fatalf("A misses %d changes of B", n)
	}
}

// Conflict rule: concurrent flag changes of one user on one post converge
// on the later change on both replicas, and a delete beats a concurrent
// flag change and a late copy of the post.
func TestReplicationConflictsConverge(t *testing.T) {
	a, b := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer a.Close()
	defer b.Close()
	ra, rb := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "B", Name: "/F"}
	for i := range 2 {
		a.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: fmt.Sprint(i), Body: msg(fmt.Sprint(i))})
	}
	syncOnce(t, a, "A", b, "B", "/F", 100)
	am, _ := a.Messages(ctx, ra)
	bm, _ := b.Messages(ctx, rb)
	// Partitioned: A flags post 1 first, B later; B flags post 2, A deletes it.
	a.SetFlags(ctx, ra, "u", []uint32{am[0].UID}, FlagsSet, []string{"$A"})
	b.SetFlags(ctx, rb, "u", []uint32{bm[0].UID}, FlagsSet, []string{"$B"})
	b.SetFlags(ctx, rb, "u", []uint32{bm[1].UID}, FlagsSet, []string{`\Flagged`})
	a.Expunge(ctx, ra, []uint32{am[1].UID})
	syncOnce(t, a, "A", b, "B", "/F", 100)
	syncOnce(t, b, "B", a, "A", "/F", 100)
	for _, s := range []struct {
		st  *Store
		ref MailboxRef
	}{{a, ra}, {b, rb}} {
		ms, _ := s.st.MessagesAs(ctx, s.ref, "u")
		if len(ms) != 1 || !slices.Equal(ms[0].Flags, []string{"$B"}) {
			t.Fatalf("%s: %+v, want one post flagged $B (later writer wins, delete wins)", s.ref, ms)
		}
	}
}

// bodyCounts counts the messages of a replica by body: a post held twice
// shows as a count of 2.
func bodyCounts(t *testing.T, s *Store, ref MailboxRef) map[string]int {
	t.Helper()
	msgs, err := s.Messages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		b, err := s.Body(ctx, ref, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		out[string(b)]++
	}
	return out
}

func checkOnce(t *testing.T, what string, counts map[string]int, want int) {
	t.Helper()
	for b, n := range counts {
		if n != 1 {
			t.Fatalf("%s: a post held %d times: %.40q", what, n, b)
		}
	}
	if len(counts) != want {
		t.Fatalf("%s: %d posts, want %d", what, len(counts), want)
	}
}

// Issue 12, idempotent by change id: a replica never holds a post twice,
// whatever happens between the commits of one Apply — the receiving
// server killed after the posts' commit and before the claim's (the store
// reopened from what was committed), the same batch applied by concurrent
// pulls (two sources answering at once, or a pull overlapping a restart's
// first pull), and the queue delivering the same message (same delivery
// id) into the replica while the replicated copy arrives.
func TestApplyNeverStoresAPostTwice(t *testing.T) {
	a := openStore(t, t.TempDir())
	defer a.Close()
	ra := MailboxRef{Store: "A", Name: "/Sales"}
	for i := range 6 {
		if _, _, err := a.Deliver(ctx, Delivery{Store: "A", Folder: "/Sales", ID: fmt.Sprint("q", i), Class: "IPM.Post", Body: msg(fmt.Sprint("post ", i))}); err != nil {
			t.Fatal(err)
		}
	}
	am, _ := a.Messages(ctx, ra)
	if _, err := a.Expunge(ctx, ra, []uint32{am[0].UID}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetFlags(ctx, ra, "u", []uint32{am[1].UID}, FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	full, err := a.ChangesSince(ctx, ra, CNSet{}, 1<<30, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var adds []Change
	for _, c := range full.Changes {
		if c.Kind == ChangeAdd {
			adds = append(adds, c)
		}
	}

	t.Run("killed between the posts and the claim", func(t *testing.T) {
		dir := t.TempDir()
		rb := MailboxRef{Store: "B", Name: "/Sales"}
		b := openStore(t, dir)
		// What a kill after the group commit of the posts leaves: the
		// posts and their change ids, no claim, no flag change.
		if _, err := b.Apply(ctx, rb, Batch{Changes: adds}); err != nil {
			t.Fatal(err)
		}
		b.Close()
		b = openStore(t, dir)
		defer b.Close()
		// The restarted server pulls again: the source answers against the
		// CN set that was committed with the posts...
		syncOnce(t, a, "A", b, "B", "/Sales", 2)
		// ...and a stale answer from before the kill arrives too.
		if res, err := b.Apply(ctx, rb, full); err != nil || res.Added != 0 {
			t.Fatalf("stale batch after restart: %+v, %v", res, err)
		}
		checkOnce(t, "B", bodyCounts(t, b, rb), 5)
		if ca, cb := contents(t, a, ra), contents(t, b, rb); !maps.Equal(ca, cb) {
			t.Fatal("B differs from A after the restart")
		}
	})

	t.Run("concurrent pulls and a delivery of the same message", func(t *testing.T) {
		c := openStore(t, t.TempDir())
		defer c.Close()
		rc := MailboxRef{Store: "C", Name: "/Sales"}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 4 {
			wg.Go(func() {
				if _, err := c.Apply(ctx, rc, full); err != nil {
					errs <- err
				}
			})
		}
		// The queue delivers post 3 (delivery id q3) into C as well.
		wg.Go(func() {
			if _, _, err := c.Deliver(ctx, Delivery{Store: "C", Folder: "/Sales", ID: "q3", Class: "IPM.Post", Body: msg("post 3")}); err != nil {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		checkOnce(t, "C", bodyCounts(t, c, rc), 5)
	})
}

// A flag change that reaches a replica before the post it flags (it comes
// from another origin, sorted earlier, in an earlier batch) is kept and
// given to the post when the post arrives: for each of several posts
// added in one group commit, each viewer's flags, and no one else's.
func TestRemoteFlagsBeforeTheirPost(t *testing.T) {
	z, a, c := openStore(t, t.TempDir()), openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer z.Close()
	defer a.Close()
	defer c.Close()
	ra, rc := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "C", Name: "/F"}
	for i := range 4 {
		if _, _, err := z.Deliver(ctx, Delivery{Store: "Z", Folder: "/F", ID: fmt.Sprint(i), Body: msg(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	syncOnce(t, z, "Z", a, "A", "/F", 100)
	am, _ := a.Messages(ctx, ra)
	// On A: u flags posts 0 and 2, w flags post 2.
	a.SetFlags(ctx, ra, "u", []uint32{am[0].UID, am[2].UID}, FlagsSet, []string{`\Seen`})
	a.SetFlags(ctx, ra, "w", []uint32{am[2].UID}, FlagsSet, []string{`\Flagged`})
	// C pulls from A: A's flag changes (origin "A") come before Z's posts.
	have, _ := c.CNSetOf(ctx, rc)
	first, err := a.ChangesSince(ctx, ra, have, 1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Changes) != 3 || first.Changes[0].Kind != ChangeFlags || !first.More {
		t.Fatalf("first batch %+v: want the 3 flag changes alone", first.Changes)
	}
	if res, err := c.Apply(ctx, rc, first); err != nil || res.Flagged != 3 {
		t.Fatalf("flags before posts: %+v %v", res, err)
	}
	if res := syncOnce(t, a, "A", c, "C", "/F", 100); res.Added != 4 {
		t.Fatalf("posts after their flags: %+v, want 4 added", res)
	}
	want := map[string]map[string][]string{ // viewer -> body -> flags
		"u": {"0": {`\Seen`}, "2": {`\Seen`}},
		"w": {"2": {`\Flagged`}},
	}
	for viewer, byBody := range want {
		ms, _ := c.MessagesAs(ctx, rc, viewer)
		if len(ms) != 4 {
			t.Fatalf("C holds %d posts, want 4", len(ms))
		}
		for _, m := range ms {
			b, _ := c.Body(ctx, rc, m.UID)
			n := string(bytes.TrimSpace(b[bytes.LastIndex(b, []byte("Hello "))+6:]))
			if !slices.Equal(m.Flags, byBody[n]) {
				t.Errorf("%s's flags on post %s: %v, want %v", viewer, n, m.Flags, byBody[n])
			}
		}
	}
}

// A batch cut short (the receiving server died after some of its group
// commits, before the claim) leaves a CN set that asks for exactly the
// rest: the next pull stores each missing post once, and the claim then
// joins the per-change points into one range again.
func TestApplyResumesAfterPartialBatch(t *testing.T) {
	a, b := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	defer a.Close()
	defer b.Close()
	ra, rb := MailboxRef{Store: "A", Name: "/F"}, MailboxRef{Store: "B", Name: "/F"}
	const posts = 600 // more than one group commit (groupMax)
	for i := range posts {
		if _, _, err := a.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: fmt.Sprint(i), Body: msg(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := a.ChangesSince(ctx, ra, CNSet{}, 1<<30, 1000)
	if err != nil || len(whole.Changes) != posts {
		t.Fatalf("batch of %d changes (%v), want %d", len(whole.Changes), err, posts)
	}
	// What a crash after the first group commits leaves: some posts, no claim.
	if res, err := b.Apply(ctx, rb, Batch{Changes: whole.Changes[:300], More: true}); err != nil || res.Added != 300 {
		t.Fatalf("partial batch: %+v %v", res, err)
	}
	have, _ := b.CNSetOf(ctx, rb)
	if len(have["A"]) != 300 {
		t.Fatalf("CN set after 300 posts without a claim has %d ranges, want one per post", len(have["A"]))
	}
	rest, err := a.ChangesSince(ctx, ra, have, 1<<30, 1000)
	if err != nil || len(rest.Changes) != 300 || rest.Changes[0].ID != whole.Changes[300].ID {
		t.Fatalf("after the partial batch the source offers %d changes (%v), want the last 300", len(rest.Changes), err)
	}
	if res := syncOnce(t, a, "A", b, "B", "/F", 1000); res.Added != 300 || res.Skipped != 0 {
		t.Fatalf("resumed pull %+v, want the 300 missing posts added", res)
	}
	if ca, cb := contents(t, a, ra), contents(t, b, rb); !maps.Equal(ca, cb) || len(cb) != posts {
		t.Fatalf("replicas differ: A %d items, B %d", len(ca), len(cb))
	}
	ka, _ := a.CNSetOf(ctx, ra)
	kb, _ := b.CNSetOf(ctx, rb)
	if !slices.Equal(kb["A"], ka["A"]) || len(kb["A"]) != 1 {
		t.Fatalf("B's CN set of A %v, want A's own %v", kb["A"], ka["A"])
	}
}

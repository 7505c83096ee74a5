package store

import (
	"os"
	"testing"
)

// PullSet holds the replica's own changes from this run on, including
// ones not made yet (none can exist elsewhere before it commits them), and
// nothing more of its own origin: a data directory restored from an older
// copy still asks for its changes made after the copy.
func TestPullSetOwnOriginFromThisRun(t *testing.T) {
	dir := t.TempDir()
	ref := MailboxRef{Store: "A", Name: "/F"}
	post := func(s *Store, id string) ChangeID {
		t.Helper()
		if _, _, err := s.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: id, Class: "IPM.Post", Body: msg(id)}); err != nil {
			t.Fatal(err)
		}
		items, err := s.ItemsOf(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		var last ChangeID
		for _, it := range items {
			if last.Less(it) {
				last = it
			}
		}
		return last
	}
	s := openStore(t, dir)
	first := post(s, "1")
	s.Close()
	// The older copy, taken after the first post.
	old := t.TempDir()
	if err := os.CopyFS(old, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	lost := post(s, "2") // exists in dir and wherever it replicated, not in the copy
	s.Close()

	r := openStore(t, old) // the restored store
	defer r.Close()
	set, err := r.PullSet(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !set.Contains(first) {
		t.Fatalf("pull set %s lacks the post the copy holds (%s)", set.Summary(), first)
	}
	if set.Contains(lost) {
		t.Fatalf("pull set %s claims %s, made after the copy: it would never get it back", set.Summary(), lost)
	}
	next := ChangeID{Origin: "A", N: r.nextCN()}
	if !set.Contains(next) || !set.Contains(ChangeID{Origin: "A", N: ^uint64(0)}) {
		t.Fatalf("pull set %s lacks this run's CNs (%s and above)", set.Summary(), next)
	}
	if set.Contains(ChangeID{Origin: "B", N: next.N}) {
		t.Fatalf("pull set %s claims another origin's CNs", set.Summary())
	}
	// CNSetOf stays what is held.
	held, err := r.CNSetOf(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if held.Contains(next) {
		t.Fatalf("CN set %s claims a change not made", held.Summary())
	}
}

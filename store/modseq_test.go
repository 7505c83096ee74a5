package store

import (
	"encoding/json"
	"slices"
	"testing"
)

func snapshotOf(t *testing.T, s *Store, ref MailboxRef, viewer string) (Status, map[uint32]MessageInfo) {
	t.Helper()
	st, msgs, err := s.Snapshot(ctx, ref, viewer)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]MessageInfo{}
	for _, m := range msgs {
		out[m.UID] = m
	}
	return st, out
}

// CONDSTORE/QRESYNC (RFC 7162) in a user mailbox: adds, flag changes and
// expunges raise HIGHESTMODSEQ; a no-op flag change does not; a
// conditional change of a message changed since is refused in the same
// transaction; expunges are remembered for VANISHED; all of it survives a
// restart and later modseqs stay above.
func TestModSeqUserMailbox(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: id, Body: msg(id)}); err != nil {
			t.Fatal(err)
		}
	}
	st0, m0 := snapshotOf(t, s, ref, "alice")
	if m0[1].ModSeq == 0 || m0[1].ModSeq >= m0[3].ModSeq || st0.HighestModSeq != m0[3].ModSeq {
		t.Fatalf("after adds: highest %d, modseqs %d %d %d", st0.HighestModSeq, m0[1].ModSeq, m0[2].ModSeq, m0[3].ModSeq)
	}

	res, err := s.UpdateFlags(ctx, ref, "alice", []uint32{1, 2}, FlagsAdd, []string{`\Seen`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st1, m1 := snapshotOf(t, s, ref, "alice")
	if res.ModSeq[1] <= st0.HighestModSeq || res.ModSeq[1] != res.ModSeq[2] || m1[1].ModSeq != res.ModSeq[1] || st1.HighestModSeq != res.ModSeq[1] {
		t.Fatalf("flag change: result %v, stored %d, highest %d (was %d)", res.ModSeq, m1[1].ModSeq, st1.HighestModSeq, st0.HighestModSeq)
	}
	if m1[3].ModSeq != m0[3].ModSeq {
		t.Fatalf("untouched message's modseq moved: %d -> %d", m0[3].ModSeq, m1[3].ModSeq)
	}

	// Setting a flag already set changes nothing, modseq included.
	if _, err := s.UpdateFlags(ctx, ref, "alice", []uint32{1}, FlagsAdd, []string{`\Seen`}, nil); err != nil {
		t.Fatal(err)
	}
	if st, m := snapshotOf(t, s, ref, "alice"); st.HighestModSeq != st1.HighestModSeq || m[1].ModSeq != m1[1].ModSeq {
		t.Fatalf("no-op change moved modseqs: highest %d -> %d", st1.HighestModSeq, st.HighestModSeq)
	}

	// UNCHANGEDSINCE: 1 changed after st0, 3 did not.
	since := st0.HighestModSeq
	res, err = s.UpdateFlags(ctx, ref, "alice", []uint32{1, 3}, FlagsAdd, []string{`\Flagged`}, &since)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Modified, []uint32{1}) || HasFlag(res.Flags[1], `\Flagged`) || !HasFlag(res.Flags[3], `\Flagged`) {
		t.Fatalf("conditional change: modified %v, flags %v", res.Modified, res.Flags)
	}

	_, mBefore := snapshotOf(t, s, ref, "alice")
	stBefore, _ := snapshotOf(t, s, ref, "alice")
	if _, err := s.Expunge(ctx, ref, []uint32{2}); err != nil {
		t.Fatal(err)
	}
	st2, _ := snapshotOf(t, s, ref, "alice")
	if st2.HighestModSeq <= stBefore.HighestModSeq {
		t.Fatalf("expunge did not raise HIGHESTMODSEQ: %d -> %d", stBefore.HighestModSeq, st2.HighestModSeq)
	}
	for _, c := range []struct {
		since uint64
		want  []uint32
	}{{0, []uint32{2}}, {stBefore.HighestModSeq, []uint32{2}}, {st2.HighestModSeq, nil}, {mBefore[3].ModSeq - 1, []uint32{2}}} {
		got, err := s.ExpungedSince(ctx, ref, c.since)
		if err != nil || !slices.Equal(got, c.want) {
			t.Fatalf("ExpungedSince(%d) = %v, %v; want %v", c.since, got, err, c.want)
		}
	}

	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	st3, _ := snapshotOf(t, s, ref, "alice")
	if st3.HighestModSeq != st2.HighestModSeq {
		t.Fatalf("HIGHESTMODSEQ after restart %d, want %d", st3.HighestModSeq, st2.HighestModSeq)
	}
	res, err = s.UpdateFlags(ctx, ref, "alice", []uint32{3}, FlagsDel, []string{`\Flagged`}, nil)
	if err != nil || res.ModSeq[3] <= st2.HighestModSeq {
		t.Fatalf("modseq after restart %d, want above %d (%v)", res.ModSeq[3], st2.HighestModSeq, err)
	}
}

// On a public folder flags are per user (SPEC A7), and so are modseqs of
// flag changes: bob's change raises his HIGHESTMODSEQ and his view of the
// post's modseq, never alice's; a post and an expunge raise everyone's.
func TestModSeqPublicFolderPerViewer(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "PUB", Name: "/Sales"}
	if _, _, err := s.Deliver(ctx, Delivery{Store: "PUB", Folder: "/Sales", ID: "p1", Class: "IPM.Post", Body: msg("p1")}); err != nil {
		t.Fatal(err)
	}
	stA0, mA0 := snapshotOf(t, s, ref, "alice")
	res, err := s.UpdateFlags(ctx, ref, "bob", []uint32{1}, FlagsAdd, []string{`\Seen`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stA, mA := snapshotOf(t, s, ref, "alice")
	stB, mB := snapshotOf(t, s, ref, "bob")
	if stA.HighestModSeq != stA0.HighestModSeq || mA[1].ModSeq != mA0[1].ModSeq {
		t.Fatalf("bob's flag change moved alice's modseqs: %d -> %d", stA0.HighestModSeq, stA.HighestModSeq)
	}
	if stB.HighestModSeq != res.ModSeq[1] || mB[1].ModSeq != res.ModSeq[1] || res.ModSeq[1] <= stA0.HighestModSeq {
		t.Fatalf("bob: highest %d, post %d, change %d", stB.HighestModSeq, mB[1].ModSeq, res.ModSeq[1])
	}
	// Removing his last flag is still a change with a modseq.
	res2, err := s.UpdateFlags(ctx, ref, "bob", []uint32{1}, FlagsDel, []string{`\Seen`}, nil)
	if err != nil || res2.ModSeq[1] <= res.ModSeq[1] || len(res2.Flags[1]) != 0 {
		t.Fatalf("flag removal: %v %v", res2, err)
	}
	if _, err := s.Expunge(ctx, ref, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	stA2, _ := snapshotOf(t, s, ref, "alice")
	if stA2.HighestModSeq <= res2.ModSeq[1] {
		t.Fatalf("expunge: alice's highest %d, not above %d", stA2.HighestModSeq, res2.ModSeq[1])
	}
	if got, _ := s.ExpungedSince(ctx, ref, stA.HighestModSeq); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("ExpungedSince = %v", got)
	}
}

// Private flag records written before modseqs (a bare JSON list) still
// read, as modseq 0 (the post's own modseq then counts).
func TestPrivFlagsReadsOldRecords(t *testing.T) {
	for raw, want := range map[string]privFlags{
		`["\\Seen","$x"]`:         {Flags: []string{`\Seen`, "$x"}},
		`{"f":["\\Seen"],"m":42}`: {Flags: []string{`\Seen`}, ModSeq: 42},
		`{"m":7}`:                 {ModSeq: 7},
	} {
		var p privFlags
		if err := json.Unmarshal([]byte(raw), &p); err != nil || !slices.Equal(p.Flags, want.Flags) || p.ModSeq != want.ModSeq {
			t.Errorf("%s -> %+v, %v; want %+v", raw, p, err, want)
		}
	}
}

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, quietLogger())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func msg(subject string) []byte {
	return []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: " + subject + "\r\n\r\nHello " + subject + "\r\n")
}

var ctx = context.Background()

func TestDeliverListBodyRoundTrip(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	when := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	uid, dup, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: "m1", Class: "IPM.Note", Date: when, Body: msg("one")})
	if err != nil || dup || uid != 1 {
		t.Fatalf("Deliver = %d, %v, %v; want 1, false, nil", uid, dup, err)
	}
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "inbox"}
	msgs, err := s.Messages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].UID != 1 || msgs[0].Size != int64(len(msg("one"))) || !msgs[0].Date.Equal(when) || msgs[0].Class != "IPM.Note" {
		t.Fatalf("Messages = %+v", msgs)
	}
	body, err := s.Body(ctx, ref, 1)
	if err != nil || !bytes.Equal(body, msg("one")) {
		t.Fatalf("Body = %q, %v", body, err)
	}
	if _, err := s.Body(ctx, ref, 2); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("Body of missing uid: %v, want ErrNoMessage", err)
	}
}

// R16: the message class given at delivery is kept (IPM.Post for folder posts).
func TestDeliverPublicFolderR16Class(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	if _, _, err := s.Deliver(ctx, Delivery{Store: "PF1", Folder: "/Sales", ID: "p1", Class: "IPM.Post", Body: msg("post")}); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Messages(ctx, MailboxRef{Store: "PF1", Name: "/Sales"})
	if err != nil || len(msgs) != 1 || msgs[0].Class != "IPM.Post" {
		t.Fatalf("Messages = %+v, %v", msgs, err)
	}
}

func TestDeliverIdempotent(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	d := Delivery{Store: "MB1", User: "alice", ID: "same", Body: msg("x")}
	uid1, dup1, err := s.Deliver(ctx, d)
	if err != nil || dup1 {
		t.Fatal(err, dup1)
	}
	uid2, dup2, err := s.Deliver(ctx, d)
	if err != nil || !dup2 || uid2 != uid1 {
		t.Fatalf("second Deliver = %d, %v, %v; want %d, true", uid2, dup2, err, uid1)
	}
	// Same ID to another mailbox is a separate delivery.
	if _, dup, _ := s.Deliver(ctx, Delivery{Store: "MB1", User: "bob", ID: "same", Body: msg("x")}); dup {
		t.Fatal("delivery to bob reported dup")
	}
	msgs, _ := s.Messages(ctx, MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"})
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	// Still a dup after the copy was expunged: a retry must not resurrect it.
	if _, err := s.Expunge(ctx, MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}, []uint32{uid1}); err != nil {
		t.Fatal(err)
	}
	if _, dup, _ := s.Deliver(ctx, d); !dup {
		t.Fatal("redelivery after expunge was stored again")
	}
}

func TestUIDsMonotonicAndPersisted(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	for i := range 3 {
		uid, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: fmt.Sprint(i), Body: msg("m")})
		if err != nil || uid != uint32(i+1) {
			t.Fatalf("Deliver %d = %d, %v", i, uid, err)
		}
	}
	st1, err := s.Status(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// Expunging the last message must not let its UID be reused.
	if _, err := s.Expunge(ctx, ref, []uint32{3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	st2, err := s.Status(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if st2.UIDValidity != st1.UIDValidity || st2.UIDNext != 4 || st2.Messages != 2 {
		t.Fatalf("after reopen status = %+v, before %+v", st2, st1)
	}
	uid, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: "after", Body: msg("m")})
	if err != nil || uid != 4 {
		t.Fatalf("Deliver after reopen = %d, %v; want 4", uid, err)
	}
}

func TestUIDValidityNewOnRecreate(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "Work"}
	if err := s.CreateMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, ref, ""); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("second create: %v", err)
	}
	st1, _ := s.Status(ctx, ref)
	if err := s.DeleteMailbox(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(ctx, ref); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("status of deleted: %v", err)
	}
	if err := s.CreateMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	st2, _ := s.Status(ctx, ref)
	if st2.UIDValidity == st1.UIDValidity || st2.UIDValidity == 0 {
		t.Fatalf("UIDVALIDITY %d after recreate, was %d", st2.UIDValidity, st1.UIDValidity)
	}
}

func TestRenameMovesInferiorsAndInbox(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	for _, n := range []string{"A", "A/B", "AB"} {
		if err := s.CreateMailbox(ctx, MailboxRef{Store: "MB1", User: "u", Name: n}, ""); err != nil {
			t.Fatal(err)
		}
	}
	uid, _, _ := s.Deliver(ctx, Delivery{Store: "MB1", User: "u", Folder: "A/B", Body: msg("x")})
	if err := s.RenameMailbox(ctx, MailboxRef{Store: "MB1", User: "u", Name: "A"}, "C", '/'); err != nil {
		t.Fatal(err)
	}
	list, _ := s.ListMailboxes(ctx, "MB1", "u")
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"AB", "C", "C/B"}) {
		t.Fatalf("after rename: %v", names)
	}
	if _, err := s.Body(ctx, MailboxRef{Store: "MB1", User: "u", Name: "C/B"}, uid); err != nil {
		t.Fatal(err)
	}
	// INBOX rename moves the messages and leaves an empty INBOX.
	s.Deliver(ctx, Delivery{Store: "MB1", User: "u", Body: msg("in")})
	if err := s.RenameMailbox(ctx, MailboxRef{Store: "MB1", User: "u", Name: "INBOX"}, "Old", '/'); err != nil {
		t.Fatal(err)
	}
	in, _ := s.Messages(ctx, MailboxRef{Store: "MB1", User: "u", Name: "INBOX"})
	old, _ := s.Messages(ctx, MailboxRef{Store: "MB1", User: "u", Name: "Old"})
	if len(in) != 0 || len(old) != 1 {
		t.Fatalf("after INBOX rename: INBOX %d, Old %d", len(in), len(old))
	}
}

func TestPublicFolderFlagsArePerUser(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "PF1", Name: "/Sales"}
	uid, _, _ := s.Deliver(ctx, Delivery{Store: "PF1", Folder: "/Sales", ID: "p", Class: "IPM.Post", Body: msg("post")})
	got, err := s.SetFlags(ctx, ref, "alice", []uint32{uid}, FlagsAdd, []string{`\seen`})
	if err != nil || !slices.Equal(got[uid], []string{`\Seen`}) {
		t.Fatalf("SetFlags = %v, %v", got, err)
	}
	a, _ := s.MessagesAs(ctx, ref, "alice")
	b, _ := s.MessagesAs(ctx, ref, "bob")
	shared, _ := s.Messages(ctx, ref)
	if !HasFlag(a[0].Flags, `\Seen`) || HasFlag(b[0].Flags, `\Seen`) || len(shared[0].Flags) != 0 {
		t.Fatalf("alice %v, bob %v, shared %v", a[0].Flags, b[0].Flags, shared[0].Flags)
	}
	// User mailbox flags are the mailbox's own.
	mref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	muid, _, _ := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg("m")})
	s.SetFlags(ctx, mref, "alice", []uint32{muid}, FlagsSet, []string{`\Flagged`, "$Work"})
	s.SetFlags(ctx, mref, "alice", []uint32{muid}, FlagsDel, []string{`\flagged`})
	ms, _ := s.Messages(ctx, mref)
	if !slices.Equal(ms[0].Flags, []string{"$Work"}) {
		t.Fatalf("flags = %v", ms[0].Flags)
	}
}

func TestNotifierFiresOnDeliver(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	if err := s.EnsureMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := s.Subscribe(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	uid, _, _ := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg("x")})
	select {
	case ev := <-ch:
		if ev.Kind != EventExists || ev.UID != uid {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s of Deliver (A9)")
	}
	s.Expunge(ctx, ref, []uint32{uid})
	if ev := <-ch; ev.Kind != EventExpunge || ev.UID != uid {
		t.Fatalf("event %+v", ev)
	}
}

func TestConcurrentDeliverUniqueUIDs(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	const n = 64
	uids := make([]uint32, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			uid, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: fmt.Sprint(i), Body: msg("c")})
			if err != nil {
				t.Error(err)
			}
			uids[i] = uid
		})
	}
	wg.Wait()
	slices.Sort(uids)
	for i, u := range uids {
		if u != uint32(i+1) {
			t.Fatalf("uids = %v", uids)
		}
	}
}

func TestLargeBodyChunked(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*chunkSize/16+123)
	body := append([]byte("Subject: big\r\n\r\n"), big...)
	uid, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Body(ctx, MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}, uid)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("big body round trip: len %d vs %d, %v", len(got), len(body), err)
	}
	if _, err := s.Expunge(ctx, MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}, []uint32{uid}); err != nil {
		t.Fatal(err)
	}
}

func TestRecentClaimedOnce(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg("1")})
	s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg("2")})
	from, to, err := s.ClaimRecent(ctx, ref, "alice")
	if err != nil || from != 0 || to != 2 {
		t.Fatalf("first claim (%d,%d] %v", from, to, err)
	}
	from, to, _ = s.ClaimRecent(ctx, ref, "alice")
	if from != to {
		t.Fatalf("second claim (%d,%d] not empty", from, to)
	}
	s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg("3")})
	from, to, _ = s.ClaimRecent(ctx, ref, "alice")
	if from != 2 || to != 3 {
		t.Fatalf("third claim (%d,%d]", from, to)
	}
}

func TestCopyKeepsFlagsAndDate(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	src := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	dst := MailboxRef{Store: "MB1", User: "alice", Name: "Archive"}
	s.CreateMailbox(ctx, dst, "")
	when := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	uid, _, _ := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Date: when, Body: msg("c")})
	s.SetFlags(ctx, src, "alice", []uint32{uid}, FlagsAdd, []string{`\Flagged`})
	res, err := s.Copy(ctx, src, dst, "alice", []uint32{uid, 99})
	if err != nil || len(res.Dest) != 1 || res.Dest[0] != 1 {
		t.Fatalf("Copy = %+v, %v", res, err)
	}
	ms, _ := s.Messages(ctx, dst)
	if !ms[0].Date.Equal(when) || !HasFlag(ms[0].Flags, `\Flagged`) {
		t.Fatalf("copied %+v", ms[0])
	}
}

func BenchmarkDeliver10KB(b *testing.B) {
	s := openStore(b, b.TempDir())
	defer s.Close()
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("x"), 10<<10)...)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: fmt.Sprint(i), Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliver10KBParallel(b *testing.B) {
	s := openStore(b, b.TempDir())
	defer s.Close()
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("x"), 10<<10)...)
	b.SetBytes(int64(len(body)))
	var mu sync.Mutex
	n := 0
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		user := fmt.Sprint("u", n)
		n++
		mu.Unlock()
		for i := 0; pb.Next(); i++ {
			if _, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: user, ID: fmt.Sprint(i), Body: body}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// limits.store_bodies can change between runs: a store reopened with bodies
// in the value log reads the bodies written inline, and back; the mode
// reaches badger (a body above 4 KB goes to the value log only there).
func TestStoreBodiesModeSwitchKeepsBodies(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KB
	body := func(n int) []byte { return append(msg(fmt.Sprint("m", n)), big...) }
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "inbox"}
	for i, o := range []Options{{}, {BodiesInValueLog: true}, {}} {
		s, err := OpenWith(dir, nil, o)
		if err != nil {
			t.Fatalf("open %d (%+v): %v", i, o, err)
		}
		if th := s.db.Opts().ValueThreshold; (th < int64(len(big))) != o.BodiesInValueLog {
			t.Fatalf("mode %+v: badger value threshold %d", o, th)
		}
		if _, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", ID: fmt.Sprint("m", i), Body: body(i)}); err != nil {
			t.Fatal(err)
		}
		for j := 0; j <= i; j++ {
			got, err := s.Body(ctx, ref, uint32(j+1))
			if err != nil || !bytes.Equal(got, body(j)) {
				t.Fatalf("mode %d: body %d = %d bytes, %v", i, j, len(got), err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

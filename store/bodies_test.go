package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// Bodies reads batches larger than one transaction's share, in the order
// asked, says which messages are gone, and matches Body byte for byte
// (chunked bodies included).
func TestBodiesInOrderWithMissing(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	n := bodiesBatch*2 + 7
	want := map[uint32][]byte{}
	for i := range n {
		body := msg(fmt.Sprint("m", i))
		if i == 5 {
			body = append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("x"), 2*chunkSize+11)...)
		}
		uid, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: body})
		if err != nil {
			t.Fatal(err)
		}
		want[uid] = body
	}
	if _, err := s.Expunge(ctx, ref, []uint32{3, 200}); err != nil {
		t.Fatal(err)
	}
	// Descending order, an expunged UID and one never assigned.
	var uids []uint32
	for uid := uint32(n + 1); uid >= 1; uid-- {
		uids = append(uids, uid)
	}
	k := 0
	err := s.Bodies(ctx, ref, uids, func(uid uint32, body []byte, ok bool) error {
		if uid != uids[k] {
			t.Fatalf("call %d for uid %d, want %d", k, uid, uids[k])
		}
		k++
		gone := uid == 3 || uid == 200 || uid == uint32(n+1)
		if ok == gone {
			t.Fatalf("uid %d: ok = %v", uid, ok)
		}
		if ok && !bytes.Equal(body, want[uid]) {
			t.Fatalf("uid %d: body %d bytes, want %d", uid, len(body), len(want[uid]))
		}
		return nil
	})
	if err != nil || k != len(uids) {
		t.Fatalf("Bodies: %v after %d of %d calls", err, k, len(uids))
	}
	stop := errors.New("stop")
	calls := 0
	err = s.Bodies(ctx, ref, uids, func(uint32, []byte, bool) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn error: %v after %d calls, want stop after 1", err, calls)
	}
	err = s.Bodies(ctx, MailboxRef{Store: "MB1", User: "alice", Name: "Nope"}, uids, func(uint32, []byte, bool) error { return nil })
	if !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("missing mailbox: %v, want ErrNoMailbox", err)
	}
}

// BodiesOf reads texts by the references Snapshot listed: a message
// expunged after listing reads as gone, the rest match Body, and a
// MessageInfo the store did not list is refused.
func TestBodiesOfListedMessages(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	for i := range 5 {
		if _, _, err := s.Deliver(ctx, Delivery{Store: "MB1", User: "alice", Body: msg(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	_, msgs, err := s.Snapshot(ctx, ref, "alice")
	if err != nil || len(msgs) != 5 {
		t.Fatalf("Snapshot: %d messages, %v", len(msgs), err)
	}
	if _, err := s.Expunge(ctx, ref, []uint32{2}); err != nil {
		t.Fatal(err)
	}
	var got []uint32
	err = s.BodiesOf(ctx, msgs, func(uid uint32, body []byte, ok bool) error {
		if ok != (uid != 2) {
			t.Fatalf("uid %d: ok = %v", uid, ok)
		}
		if ok {
			want, err := s.Body(ctx, ref, uid)
			if err != nil || !bytes.Equal(body, want) {
				t.Fatalf("uid %d: %q, Body %q (%v)", uid, body, want, err)
			}
		}
		got = append(got, uid)
		return nil
	})
	if err != nil || len(got) != 5 {
		t.Fatalf("BodiesOf: %v, calls for %v", err, got)
	}
	if err := s.BodiesOf(ctx, []MessageInfo{{UID: 1}}, func(uint32, []byte, bool) error { return nil }); err == nil {
		t.Fatal("BodiesOf took a MessageInfo the store did not list")
	}
}

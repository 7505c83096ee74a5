package imapd

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// rawSection must answer exactly what the parser would for the messages it
// takes, and leave the others to the parser.
func TestRawSectionMatchesParser(t *testing.T) {
	full := &imap.FetchItemBodySection{}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}
	for _, tc := range []struct {
		name    string
		msg     string
		takeHdr bool
	}{
		{"plain", string(message("s", "body\r\n\r\nmore")), true},
		{"folded", "Subject: a\r\n b\r\nX-A: 1\r\n\r\nbody", true},
		{"header only", "Subject: a\r\n\r\n", true},
		{"bare LF", "Subject: a\nX: b\r\n\r\nbody", false},
		{"LF only", "Subject: a\n\nbody", false},
		{"no header", "\r\nbody\r\n\r\nx", false},
		{"no empty line", "Subject: a\r\n", false},
	} {
		b, ok := rawSection([]byte(tc.msg), hdr)
		if ok != tc.takeHdr {
			t.Errorf("%s: BODY[HEADER] taken = %v, want %v", tc.name, ok, tc.takeHdr)
		}
		if ok {
			if want := imapserver.ExtractBodySection(bytes.NewReader([]byte(tc.msg)), hdr); !bytes.Equal(b, want) {
				t.Errorf("%s: BODY[HEADER] = %q, parser %q", tc.name, b, want)
			}
		}
		// BODY[] is always the stored text, RFC822.SIZE bytes.
		if b, ok := rawSection([]byte(tc.msg), full); !ok || string(b) != tc.msg {
			t.Errorf("%s: BODY[] = %q, %v", tc.name, b, ok)
		}
		if tc.takeHdr {
			if want := imapserver.ExtractBodySection(bytes.NewReader([]byte(tc.msg)), full); string(want) != tc.msg {
				t.Errorf("%s: parser's BODY[] = %q differs from the message", tc.name, want)
			}
		}
	}
	for _, bs := range []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierText},
		{Part: []int{1}},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject"}},
		{Partial: &imap.SectionPartial{Size: 4}},
	} {
		if _, ok := rawSection(message("s", "b"), bs); ok {
			t.Errorf("rawSection took %+v", bs)
		}
	}
}

// A FETCH of many messages, some larger than the cork buffer, returns every
// byte in order, and the next command's reply follows it (A7).
func TestFetchManyAndLargeMessagesA7(t *testing.T) {
	e := newEnv(t)
	var want [][]byte
	for i := range 60 {
		body := fmt.Sprintf("line %d\r\n", i)
		if i%20 == 7 {
			body = string(bytes.Repeat([]byte(fmt.Sprintf("big %d 0123456789abcdef\r\n", i)), corkSize/10))
		}
		b := message(fmt.Sprint("m", i), body)
		if _, _, err := e.store.Deliver(context.Background(), store.Delivery{Store: "s1-mbx", User: "alice", Body: b}); err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	c := e.login("alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs := fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{hdr, full}})
	if len(msgs) != len(want) {
		t.Fatalf("FETCH 1:* returned %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) || !bytes.Equal(m.FindBodySection(full), want[i]) || m.RFC822Size != int64(len(want[i])) {
			t.Fatalf("message %d: seq %d, %d bytes (size %d), want %d", i+1, m.SeqNum, len(m.FindBodySection(full)), m.RFC822Size, len(want[i]))
		}
		h := m.FindBodySection(hdr)
		if !bytes.HasPrefix(want[i], h) || !bytes.HasSuffix(h, []byte("\r\n\r\n")) || !bytes.Contains(h, fmt.Appendf(nil, "Subject: m%d", i)) {
			t.Fatalf("message %d: BODY[HEADER] = %q", i+1, h)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("NOOP after a large FETCH: %v", err)
	}
}

// A non-PEEK body fetch sets \Seen on every message it returns and reports
// the new flags in each FETCH response (RFC 3501 6.4.5).
func TestFetchBodySetsSeenOnEachA7(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.deliver("alice", fmt.Sprint("m", i), "x")
	}
	c := e.login("alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{}
	msgs := fetchAll(t, c, imap.SeqSetNum(2, 4), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if len(msgs) != 2 {
		t.Fatalf("FETCH 2,4 returned %d messages", len(msgs))
	}
	for _, m := range msgs {
		if !hasFlag(m.Flags, imap.FlagSeen) {
			t.Fatalf("seq %d: FETCH BODY[] reported flags %v, want \\Seen", m.SeqNum, m.Flags)
		}
	}
	infos, err := e.store.Messages(context.Background(), store.MailboxRef{Store: "s1-mbx", User: "alice", Name: "INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if got, want := store.HasFlag(in.Flags, `\Seen`), in.UID == 2 || in.UID == 4; got != want {
			t.Fatalf("uid %d: \\Seen stored = %v, want %v", in.UID, got, want)
		}
	}
	// Already seen: no FLAGS unless asked.
	msgs = fetchAll(t, c, imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if len(msgs) != 1 || msgs[0].Flags != nil {
		t.Fatalf("second FETCH BODY[] = %+v, want no FLAGS", msgs)
	}
}

// Changes by another session reach the client at its next command: new
// messages (EXISTS) and flag changes (FETCH FLAGS); a command with no change
// in between reports nothing (A7).
func TestOtherSessionChangesReportedAtNoopA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	exists := make(chan uint32, 10)
	flags := make(chan uint32, 10)
	a := e.login("alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			m.Collect()
			flags <- m.SeqNum
		},
	}})
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if len(exists)+len(flags) != 0 {
		t.Fatalf("NOOP without changes reported %d EXISTS, %d FETCH", len(exists), len(flags))
	}
	b := e.login("alice", nil)
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	e.deliver("alice", "b", "x")
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 2 {
			t.Fatalf("EXISTS %d, want 2", n)
		}
	default:
		t.Fatal("NOOP did not report the new message")
	}
	// imapclient hands unilateral FETCH data to its handler on a goroutine.
	select {
	case seq := <-flags:
		if seq != 1 {
			t.Fatalf("FETCH FLAGS for seq %d, want 1", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NOOP did not report the flag change")
	}
}

// A message expunged by another session is skipped by FETCH (its EXPUNGE
// may not be sent during FETCH) and announced at the next NOOP (A7,
// RFC 3501 7.4.1).
func TestFetchSkipsMessageExpungedElsewhereA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "first")
	e.deliver("alice", "b", "second")
	expunged := make(chan uint32, 10)
	a := e.login("alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Expunge(context.Background(), store.MailboxRef{Store: "s1-mbx", User: "alice", Name: "INBOX"}, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	msgs := fetchAll(t, a, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{full}})
	if len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].SeqNum != 2 || !bytes.Contains(msgs[0].FindBodySection(full), []byte("second")) {
		t.Fatalf("FETCH 1:* after an expunge elsewhere = %+v", msgs)
	}
	if len(expunged) != 0 {
		t.Fatal("EXPUNGE sent during FETCH")
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Fatalf("EXPUNGE %d, want 1", seq)
		}
	default:
		t.Fatal("NOOP did not report the expunge")
	}
}

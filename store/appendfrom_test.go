package store

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// AppendFrom streams a multi-chunk body and stores it byte for byte; a
// reader that ends early stores nothing (issue 14: cut-off APPEND).
func TestAppendFromStreamsAndRefusesShortBodies(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ref := MailboxRef{Store: "MB1", User: "alice", Name: "INBOX"}
	if err := s.EnsureMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 3*chunkSize/18))
	uid, _, err := s.AppendFrom(ctx, ref, bytes.NewReader(body), int64(len(body)), AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Body(ctx, ref, uid)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Body: %d bytes, %v; want the %d bytes appended", len(got), err, len(body))
	}
	short := io.LimitReader(bytes.NewReader(body), int64(2*chunkSize+10))
	if _, _, err := s.AppendFrom(ctx, ref, short, int64(len(body)), AppendOptions{}); err == nil {
		t.Fatal("AppendFrom accepted a body shorter than its size")
	}
	msgs, err := s.Messages(ctx, ref)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages = %d, %v; want only the complete message", len(msgs), err)
	}
}

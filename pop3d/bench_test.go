package pop3d

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func BenchmarkRetr10KB(b *testing.B) {
	var body strings.Builder
	body.WriteString("From: a@example.com\r\nSubject: bench\r\n\r\n")
	for body.Len() < 10<<10 {
		body.WriteString("The quick brown fox jumps over the lazy dog. 0123456789\r\n.dot line\r\n")
	}
	md := newMaildrop(body.String())
	_, addr := startServer(b, Options{Auth: &fakeAuth{md: md}, Logger: slog.New(slog.DiscardHandler)})
	cl := dial(b, addr)
	cl.login()
	_ = cl.c.SetDeadline(time.Time{})
	b.SetBytes(int64(body.Len()))
	b.ResetTimer()
	for b.Loop() {
		// Raw reads: the test helpers' t.Helper calls would dominate.
		if _, err := cl.c.Write([]byte("RETR 1\r\n")); err != nil {
			b.Fatal(err)
		}
		l, err := cl.r.ReadSlice('\n')
		if err != nil || !strings.HasPrefix(string(l), "+OK") {
			b.Fatalf("%q %v", l, err)
		}
		for {
			l, err := cl.r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if string(l) == ".\r\n" {
				break
			}
		}
	}
}

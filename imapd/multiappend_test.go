package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func lit(s string) string { return fmt.Sprintf("{%d}", len(s)) }

// appendMulti sends an APPEND of msgs to mailbox with synchronizing
// literals, waiting for each continuation; it returns the tagged reply,
// or the reply that came instead of a continuation.
func (r *rawConn) appendMulti(tag, mailbox string, msgs ...string) string {
	r.t.Helper()
	r.send(tag + " APPEND " + mailbox + " " + lit(msgs[0]) + "\r\n")
	for i, m := range msgs {
		if l := r.line(); !strings.HasPrefix(l, "+") {
			return l
		}
		next := "\r\n"
		if i+1 < len(msgs) {
			next = " (\\Flagged) " + lit(msgs[i+1]) + "\r\n"
		}
		r.send(m + next)
	}
	return tagged(r.until(tag))
}

// MULTIAPPEND (RFC 3502): several messages in one APPEND, stored in
// order with consecutive UIDs and one APPENDUID set, with synchronizing
// literals and LITERAL+, to a personal and a public folder.
func TestMultiAppend(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	if caps := strings.Join(r.cmd("C CAPABILITY"), " "); !strings.Contains(caps, " MULTIAPPEND") {
		t.Fatalf("CAPABILITY lacks MULTIAPPEND: %s", caps)
	}
	one, two := "Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n"
	if got := r.appendMulti("A1", "INBOX", one, two); !strings.HasPrefix(got, "A1 OK [APPENDUID ") || !strings.Contains(got, " 1:2]") {
		t.Fatalf("MULTIAPPEND: %q, want OK [APPENDUID v 1:2]", got)
	}
	three := "Subject: three\r\n\r\n3\r\n"
	r.send("A2 APPEND INBOX {" + fmt.Sprint(len(three)) + "+}\r\n" + three + " (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {" + fmt.Sprint(len(one)) + "+}\r\n" + one + "\r\n")
	if got := tagged(r.until("A2")); !strings.HasPrefix(got, "A2 OK [APPENDUID ") || !strings.Contains(got, " 3:4]") {
		t.Fatalf("MULTIAPPEND with LITERAL+: %q", got)
	}
	r.cmd("S SELECT INBOX")
	got := strings.Join(r.cmd("F FETCH 1:* (FLAGS INTERNALDATE ENVELOPE)"), "\n")
	for _, want := range []string{`"one"`, `"two"`, `"three"`, `\Flagged`, `\Seen`, "1-Jan-2020 10:00:00 +0000"} {
		if !strings.Contains(got, want) {
			t.Errorf("FETCH after MULTIAPPEND lacks %q:\n%s", want, got)
		}
	}
	if n := e.messages("INBOX"); n != 4 {
		t.Fatalf("INBOX holds %d messages, want 4", n)
	}
	if got := r.appendMulti("P1", `"Public Folders/Open"`, one, two); !strings.HasPrefix(got, "P1 OK [APPENDUID ") {
		t.Fatalf("MULTIAPPEND to a public folder: %q", got)
	}
	if n := e.messages("Public Folders/Open"); n != 2 {
		t.Fatalf("public folder holds %d messages, want 2", n)
	}
}

// RFC 3502: all or none. A refused, failing or cut-off later message
// leaves none of the earlier ones stored; a missing mailbox is refused
// before the first literal.
func TestMultiAppendAllOrNone(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	small := "Subject: small\r\n\r\nhello\r\n"
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n"
	// The second message is over /Small's 1 KB limit: NO [TOOBIG] instead
	// of its continuation, and the first is not stored either.
	if got := r.appendMulti("A1", `"Public Folders/Small"`, small, big); !strings.HasPrefix(got, "A1 NO [TOOBIG]") {
		t.Fatalf("MULTIAPPEND with an oversized second message: %q", got)
	}
	if n := e.messages("Public Folders/Small"); n != 0 {
		t.Fatalf("/Small holds %d messages after a refused MULTIAPPEND, want 0", n)
	}
	// A missing mailbox: refused before any literal is sent.
	if got := r.appendMulti("A2", "Nowhere", small, small); !strings.HasPrefix(got, "A2 NO [TRYCREATE]") {
		t.Fatalf("MULTIAPPEND to a missing mailbox: %q", got)
	}
	// LITERAL+ to a missing mailbox: both literals are read and dropped,
	// never run as commands, and the session goes on.
	r.send("A3 APPEND Nowhere {" + fmt.Sprint(len(small)) + "+}\r\n" + small + " {9+}\r\nA4 NOOP\r\n\r\n")
	if got := tagged(r.until("A3")); !strings.HasPrefix(got, "A3 NO [TRYCREATE]") {
		t.Fatalf("LITERAL+ MULTIAPPEND to a missing mailbox: %q", got)
	}
	if got := tagged(r.cmd("A5 NOOP")); !strings.HasPrefix(got, "A5 OK") {
		t.Fatalf("NOOP after the refused APPEND: %q", got)
	}
	// Cut off in the second literal: nothing stored.
	r.send("A6 APPEND INBOX " + lit(small) + "\r\n")
	r.line()
	r.send(small + " {100}\r\n")
	r.line()
	r.send("Subject: cut\r\n")
	r.c.Close()
	eventually(t, 30*time.Second, "the failed APPEND in the log", func() bool {
		return strings.Contains(e.logs.String(), "handling APPEND command")
	})
	if n := e.messages("INBOX"); n != 0 {
		t.Fatalf("INBOX holds %d messages after a cut-off MULTIAPPEND, want 0", n)
	}
}

// BINARY (RFC 3516): a message with NUL octets appended as a literal8 is
// stored base64-encoded, so BODY[1] sends no NUL in a literal, while
// BINARY[1] and BINARY.SIZE[1] give back the octets sent (imaptest
// "append-binary").
func TestAppendBinaryLiteral8(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	msg := "From: a@b.example\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xed\r\n\r\r\n"
	r.send("A1 APPEND INBOX ~" + lit(msg) + "\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("want a continuation, got %q", l)
	}
	r.send(msg + "\r\n")
	if got := tagged(r.until("A1")); !strings.HasPrefix(got, "A1 OK") {
		t.Fatalf("APPEND literal8: %q", got)
	}
	r.cmd("S SELECT INBOX")
	body := strings.Join(r.cmd("F1 FETCH 1 (BODY.PEEK[1])"), "\n")
	if strings.Contains(body, "\x00") || !strings.Contains(body, "AO0NCg0NCg==") {
		t.Fatalf("BODY[1] of a binary message: %q, want base64 and no NUL", body)
	}
	got := strings.Join(r.cmd("F2 FETCH 1 (BINARY.SIZE[1])"), "\n")
	if !strings.Contains(got, "BINARY.SIZE[1] 7") {
		t.Fatalf("BINARY.SIZE[1]: %q, want 7", got)
	}
}

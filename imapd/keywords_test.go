package imapd

import (
	"strings"
	"testing"
)

// indexOf is the index of the first line containing sub, or -1.
func indexOf(lines []string, sub string) int {
	for i, l := range lines {
		if strings.Contains(l, sub) {
			return i
		}
	}
	return -1
}

// A new keyword is announced in FLAGS and PERMANENTFLAGS before a FETCH
// shows it, to the session that set it and to others with the mailbox
// selected (RFC 3501 7.2.6; imaptest "Keyword used without being in FLAGS").
func TestNewKeywordsAnnouncedBeforeUse(t *testing.T) {
	e := newEnv(t)
	a, b := e.rawLogin("alice"), e.rawLogin("alice")
	a.appendRaw("INBOX", "Subject: k\r\n\r\nbody\r\n")
	a.cmd("S SELECT INBOX")
	b.cmd("S SELECT INBOX")

	got := a.cmd("K STORE 1 +FLAGS ($Label1)")
	flags, perm, fetch := indexOf(got, "* FLAGS ("), indexOf(got, "[PERMANENTFLAGS ("), indexOf(got, "FETCH (FLAGS (")
	if flags < 0 || perm < 0 || fetch < 0 || flags > fetch || perm > fetch ||
		!strings.Contains(got[flags], "$Label1") || !strings.Contains(got[perm], "$Label1") || !strings.Contains(got[perm], `\*`) {
		t.Fatalf("STORE of a new keyword:\n%s", strings.Join(got, "\n"))
	}
	// Setting it again announces nothing new.
	if again := a.cmd("K STORE 1 +FLAGS ($Label1)"); indexOf(again, "* FLAGS (") >= 0 {
		t.Fatalf("known keyword announced again:\n%s", strings.Join(again, "\n"))
	}

	got = b.cmd("N NOOP")
	flags, fetch = indexOf(got, "* FLAGS ("), indexOf(got, "FETCH (")
	if flags < 0 || fetch < 0 || flags > fetch || !strings.Contains(got[flags], "$Label1") {
		t.Fatalf("other session's NOOP:\n%s", strings.Join(got, "\n"))
	}

	// NIL is an atom like any other keyword (imaptest "nil"), announced
	// first like any other.
	got = a.cmd("K STORE 1 +FLAGS NIL")
	if flags, fetch := indexOf(got, "* FLAGS ("), indexOf(got, "FETCH (FLAGS ("); flags < 0 || fetch < flags || !strings.Contains(got[fetch], "NIL") {
		t.Fatalf("STORE +FLAGS NIL:\n%s", strings.Join(got, "\n"))
	}

	c := e.rawLogin("alice")
	got = c.cmd("S SELECT INBOX")
	if i := indexOf(got, "* FLAGS ("); i < 0 || !strings.Contains(got[i], "$Label1") {
		t.Fatalf("SELECT does not list the mailbox's keyword:\n%s", strings.Join(got, "\n"))
	}
}

// Command lines up to 64 KiB are accepted (imaptest "id" sends 30 KB); a
// longer one gets BYE with a reason, not a silent close.
func TestLongCommandLines(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	r.cmd("S SELECT INBOX")
	long := "X SEARCH " + strings.Repeat("OR SUBJECT aaaaaaaaaa ", 2600) + "ALL" // ~60 KB
	if got := tagged(r.cmd(long)); !strings.HasPrefix(got, "X OK") {
		t.Fatalf("60 KB SEARCH: %.80q", got)
	}
	r.send("Y SEARCH SUBJECT " + strings.Repeat("a", 70<<10) + "\r\n")
	if got := r.line(); !strings.HasPrefix(got, "* BYE") {
		t.Fatalf("70 KB line: %.80q, want * BYE", got)
	}
}

package imapd

import (
	"strconv"
	"strings"
	"testing"
)

// ID, UNSELECT and LITERAL+ are advertised after login and work (issue
// 14: what Exchange and common clients use).
func TestIDUnselectLiteralPlus(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	caps := strings.Join(r.cmd("C CAPABILITY"), " ")
	for _, c := range []string{" ID", " UNSELECT", " LITERAL+", " NAMESPACE", " CHILDREN"} {
		if !strings.Contains(caps, c) {
			t.Errorf("CAPABILITY lacks%s: %s", c, caps)
		}
	}
	got := r.cmd(`I ID ("name" "test" "version" "1")`)
	if len(got) != 2 || !strings.HasPrefix(got[0], `* ID ("name" "pfrouter")`) || !strings.HasPrefix(got[1], "I OK") {
		t.Fatalf("ID: %q", got)
	}
	if got := tagged(r.cmd("I ID NIL")); !strings.HasPrefix(got, "I OK") {
		t.Fatalf("ID NIL: %q", got)
	}
	if got := tagged(r.cmd(`I ID ("odd")`)); !strings.HasPrefix(got, "I BAD") {
		t.Fatalf("ID with an odd list: %q", got)
	}
	// LITERAL+: no continuation request; the literal follows at once.
	msg := "Subject: lp\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n"
	r.send("A APPEND INBOX {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
	if got := tagged(r.until("A")); !strings.HasPrefix(got, "A OK") {
		t.Fatalf("APPEND with LITERAL+: %q", got)
	}
	r.cmd("S SELECT INBOX")
	if got := tagged(r.cmd("U UNSELECT")); !strings.HasPrefix(got, "U OK") {
		t.Fatalf("UNSELECT: %q", got)
	}
	if got := tagged(r.cmd("F FETCH 1 FLAGS")); !strings.HasPrefix(got, "F BAD") {
		t.Fatalf("FETCH after UNSELECT: %q, want BAD (no mailbox selected)", got)
	}
}

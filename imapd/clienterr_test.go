package imapd

import (
	"strings"
	"testing"
)

// Client mistakes get BAD or NO with a reason, never NO [SERVERBUG], and
// the session goes on (issue 14; imaptest's "atoms": a name that is not
// valid modified UTF-7 is NO, a LIST pattern that is not is OK).
func TestClientErrorsAreNotServerBugs(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	deep := "A SEARCH " + strings.Repeat("(", 1000) + "ALL" + strings.Repeat(")", 1000)
	for _, c := range []struct{ cmd, want string }{
		{`A CREATE "&AGE"`, "A NO [CANNOT]"}, // invalid modified UTF-7
		{`A SELECT "!#$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}"`, "A NO"},
		{"A CREATE \"x\x00y\"", "A BAD"},    // NUL in a name
		{"A CREATE {3}\r\nx\x00y", "A BAD"}, // NUL in a literal name
		{`A LIST "" "&AGE"`, "A OK"},
		{`A LIST "" !#$$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}%*`, "A OK"},
		{`A SELECT INBOX`, "A OK"},
		{deep, "A BAD"},
		{`A FETCH 1:x FLAGS`, "A BAD"},
		{`A APPEND INBOX "32-Foo-2025 10:00:00 +0000" {1}`, "A BAD"},
	} {
		var got []string
		if i := strings.Index(c.cmd, "{3}\r\n"); i >= 0 {
			r.send(c.cmd[:i+5])
			if l := r.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("%q: want a continuation, got %q", c.cmd, l)
			}
			r.send(c.cmd[i+5:] + "\r\n")
			got = r.until("A")
		} else {
			got = r.cmd(c.cmd)
		}
		t.Logf("%.40q -> %q", c.cmd, got)
		last := tagged(got)
		if !strings.HasPrefix(last, c.want) || strings.Contains(last, "SERVERBUG") {
			t.Errorf("%.60q: got %q, want %s", c.cmd, last, c.want)
		}
		if ok := tagged(r.cmd("N NOOP")); !strings.HasPrefix(ok, "N OK") {
			t.Fatalf("session unusable after %.60q: %q\n%s", c.cmd, ok, e.logs)
		}
	}
}

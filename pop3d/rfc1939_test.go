package pop3d

import (
	"strings"
	"testing"
)

// RFC 1939 / 2449 behaviour on each command's edge cases over raw lines:
// message numbers out of range or deleted, missing and extra arguments,
// case-insensitive keywords, commands of other states.
func TestRFC1939EdgeCases(t *testing.T) {
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop(msg1, msg2)}, MaxBadCommands: 100})
	cl := dial(t, addr)
	for _, c := range []struct{ cmd, want string }{
		{"PASS secret pw", "-ERR"}, // PASS before USER
		{"STAT", "-ERR"},           // not in TRANSACTION yet
		{"APOP alice 0123456789abcdef0123456789abcdef", "-ERR"},
	} {
		if got := cl.cmd(c.cmd); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %s", c.cmd, got, c.want)
		}
	}
	cl.login()
	for _, c := range []struct{ cmd, want string }{
		{"stat", "+OK 2 "},
		{"LIST 0", "-ERR"},
		{"LIST 3", "-ERR"},
		{"LIST x", "-ERR"},
		{"LIST 1 2", "-ERR"},
		{"LIST 1", "+OK 1 "},
		{"UIDL 3", "-ERR"},
		{"RETR", "-ERR"},
		{"RETR 0", "-ERR"},
		{"TOP 1", "-ERR"},
		{"TOP 1 -1", "-ERR"},
		{"DELE 1", "+OK"},
		{"DELE 1", "-ERR"},
		{"RETR 1", "-ERR"},
		{"LIST 1", "-ERR"},
		{"UIDL 1", "-ERR"},
		{"TOP 1 0", "-ERR"},
		{"STAT", "+OK 1 "},
		{"NOOP", "+OK"},
		{"NOOP x", "-ERR"},
		{"LAST", "-ERR"}, // removed from RFC 1939
		{"USER bob", "-ERR"},
		{"RSET", "+OK"},
		{"STAT", "+OK 2 "},
		{"RSET x", "-ERR"},
	} {
		if got := cl.cmd(c.cmd); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %s", c.cmd, got, c.want)
		}
	}
	// Multi-line LIST and UIDL list only undeleted messages.
	cl.cmd("DELE 2")
	if got := cl.multi("LIST"); len(got) != 1 || !strings.HasPrefix(got[0], "1 ") {
		t.Errorf("LIST after DELE 2: %q", got)
	}
	if got := cl.multi("UIDL"); len(got) != 1 || !strings.HasPrefix(got[0], "1 ") {
		t.Errorf("UIDL after DELE 2: %q", got)
	}
	cl.expect("QUIT", "+OK")
	cl.expectClosed()
}

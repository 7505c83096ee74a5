package imapd

import (
	"slices"
	"strings"
	"testing"
)

// The front end announces Capabilities() in the OK of the login it hands
// over, and clients (imaptest among them) take that list as the session's
// without asking again: it must be what CAPABILITY says after login, or
// the client never uses the extensions (issue 14: imaptest ran none).
func TestCapabilitiesMatchAuthenticatedState(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	lines := r.cmd("C CAPABILITY")
	var after []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "* CAPABILITY "); ok {
			after = strings.Fields(rest)
		}
	}
	announced := e.srv.Capabilities()
	slices.Sort(after)
	slices.Sort(announced)
	if !slices.Equal(after, announced) {
		t.Fatalf("Capabilities() = %v\nCAPABILITY after login = %v", announced, after)
	}
	if !slices.Contains(announced, "ESEARCH") || !slices.Contains(announced, "IDLE") {
		t.Fatalf("Capabilities() lacks extensions the server serves: %v", announced)
	}
}

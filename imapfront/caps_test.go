package imapfront

import (
	"strings"
	"testing"
	"time"

	"pfrouter/config"
)

// Per-IP and per-user connection caps (issue 14: 2,000 idle connections
// were accepted): the connection over the cap gets "* BYE" and is closed;
// a slot frees when a session ends.
func TestConnectionCaps(t *testing.T) {
	fe := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginPlainText, dir: newDir(t, "", "127.0.0.1:2", "127.0.0.1:3"),
		perIP: 3, perUser: 1})
	a := dial(t, fe.addr)
	a.expect("* OK")
	b := dial(t, fe.addr)
	b.expect("* OK")
	c := dial(t, fe.addr)
	c.expect("* OK")
	over := dial(t, fe.addr)
	over.expect("* BYE [UNAVAILABLE] Too many connections from your address")
	over.expectClosed()

	// One session per user: the second login of alice is refused.
	if _, ok := a.cmd("a1", "LOGIN alice alice-pw"); !strings.HasPrefix(ok, "a1 OK") {
		t.Fatalf("first login: %q", ok)
	}
	waitUser(t, fe.local, "alice")
	b.send("b1 LOGIN alice alice-pw")
	b.expect("* BYE [UNAVAILABLE] Too many sessions for this user")
	b.expectClosed()
	if untagged, ok := c.cmd("c1", "LOGIN dan dan-pw"); strings.Contains(strings.Join(append(untagged, ok), " "), "Too many") {
		t.Fatalf("dan refused because of alice: %q", ok)
	}

	// alice logs out: her user slot and b's address slot are free again.
	a.cmd("a2", "LOGOUT")
	a.expectClosed()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := dial(t, fe.addr)
		if l := d.line(); strings.HasPrefix(l, "* OK") {
			if _, ok := d.cmd("d1", "LOGIN alice alice-pw"); strings.HasPrefix(ok, "d1 OK") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("slots not released after the sessions ended")
		}
		d.conn.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

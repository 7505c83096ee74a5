package imapd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// ServeConn takes over a connection the front end authenticated: the
// client must see no greeting, and its next command a normal response.
func TestServeConnSendsNoGreeting(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "handed over", "x")
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeConn(server, "alice") }()

	client.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(client)
	send := func(line string) {
		if _, err := client.Write([]byte(line + "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// Read until the tagged reply, returning all lines.
	reply := func(tag string) []string {
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, lines)
			}
			lines = append(lines, strings.TrimRight(l, "\r\n"))
			if strings.HasPrefix(l, tag+" ") {
				return lines
			}
		}
	}
	send("a1 NOOP")
	lines := reply("a1")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "a1 OK") {
		t.Fatalf("first lines after hand-over %q: want only the NOOP's OK, no greeting", lines)
	}
	send("a2 SELECT INBOX")
	lines = reply("a2")
	if !strings.HasPrefix(lines[len(lines)-1], "a2 OK") || !strings.Contains(strings.Join(lines, "\n"), "* 1 EXISTS") {
		t.Fatalf("SELECT after hand-over: %q", lines)
	}
	send("a3 LOGOUT")
	reply("a3")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after LOGOUT")
	}
}

func TestServeConnRefusesNonLocalUser(t *testing.T) {
	e := newEnv(t)
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	if err := e.srv.ServeConn(server, "carol"); err == nil {
		t.Fatal("ServeConn accepted a user whose mailbox is on another server")
	}
	if err := e.srv.ServeConn(server, "nobody"); err == nil {
		t.Fatal("ServeConn accepted an unknown user")
	}
}

func TestLoginRefusesBadPasswordAndNonLocalUser(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ user, pass string }{{"alice", "wrong"}, {"carol", "carol-pw"}, {"nobody", "x"}} {
		c := e.dial()
		if err := c.Login(tc.user, tc.pass).Wait(); err == nil {
			t.Errorf("LOGIN %s/%s succeeded", tc.user, tc.pass)
		}
	}
}

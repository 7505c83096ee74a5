package pop3d

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// One address cannot hold more than MaxConnsPerIP sessions (issue 14):
// the one over is told -ERR [SYS/TEMP] and closed; a slot frees when a
// session ends.
func TestPerIPConnectionCap(t *testing.T) {
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop()}, MaxConnsPerIP: 2})
	a := dial(t, addr)
	dial(t, addr)
	over := func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	if l := over(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many connections") {
		t.Fatalf("third connection: %q", l)
	}
	a.send("QUIT")
	a.line()
	deadline := time.Now().Add(30 * time.Second)
	for l := over(); !strings.HasPrefix(l, "+OK"); l = over() {
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after QUIT: %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A user cannot hold more than MaxConnsPerUser logged-in sessions (issue
// 14), relayed ones included (the maildrop lock only sees local ones):
// the login over it is answered -ERR [IN-USE] (RFC 2449), the relay it
// opened is closed, the session stays in AUTHORIZATION, and a slot frees
// when a session ends. Connecting without logging in takes no user slot.
func TestPerUserSessionCap(t *testing.T) {
	var (
		mu       sync.Mutex
		backends []net.Conn // the mailbox server's end of each relay
	)
	auth := &fakeAuth{proxy: func() (net.Conn, error) {
		front, back := net.Pipe()
		mu.Lock()
		backends = append(backends, back)
		mu.Unlock()
		return front, nil
	}}
	_, addr := startServer(t, Options{Auth: auth, MaxConnsPerUser: 2, MaxConnsPerIP: -1})
	idle := dial(t, addr) // not logged in: no user slot
	idle.multi("CAPA")
	a, b, c := dial(t, addr), dial(t, addr), dial(t, addr)
	a.login()
	b.login()
	c.expect("USER alice", "+OK")
	if l := c.cmd("PASS secret pw"); !strings.HasPrefix(l, "-ERR [IN-USE] too many sessions") {
		t.Fatalf("third session's login: %q", l)
	}
	mu.Lock()
	refused := backends[2]
	mu.Unlock()
	refused.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := refused.Read(make([]byte, 1)); err == nil {
		t.Fatal("the relay opened for the refused login is still open")
	}
	// Still in AUTHORIZATION: a transaction command is out of state.
	if l := c.cmd("STAT"); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("STAT after the refused login: %q", l)
	}
	// The first session ends (its relay closes): the slot frees.
	mu.Lock()
	backends[0].Close()
	mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.c.SetDeadline(time.Now().Add(10 * time.Second))
		c.expect("USER alice", "+OK")
		l := c.cmd("PASS secret pw")
		if strings.HasPrefix(l, "+OK") {
			break
		}
		if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login after a session ended: %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

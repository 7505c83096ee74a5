package pop3d

import (
	"bufio"
	"net"
	"strings"
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

package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/store"
)

// R13b, S6: when a next hop stops answering, after failure_threshold
// failed attempts it is marked down in the sender's link state and the
// waiting message takes another path (here: s2 is the only rg-a bridgehead
// of connector ab, so ab becomes unusable and ab2 carries the post).
func TestNextHopFailureMarksDown(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	if err := c.Nodes["s2"].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "around")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 15*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s4" {
		t.Errorf("path %s, want s1>s4 around the dead s2", got)
	}
	if !s1.LinkState.Graph().ServerDown("s2") {
		t.Error("s2 not marked down in s1's link state")
	}
	delete(c.Nodes, "s2")
	c.Order = without(c.Order, "s2")
}

// R13b: suppress_state_changes keeps hops up whatever happens; the post
// waits for the dead hop instead of being rerouted.
func TestSuppressStateChanges(t *testing.T) {
	yaml := strings.Replace(testOrg, "failure_threshold: 2}", "failure_threshold: 2, suppress_state_changes: true}", 1)
	c := startOrg(t, yaml)
	s1 := c.Nodes["s1"]
	c.Nodes["s2"].Close(context.Background())
	delete(c.Nodes, "s2")
	c.Order = without(c.Order, "s2")
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "suppressed")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // several retries at 200ms..1s
	if s1.LinkState.Graph().ServerDown("s2") {
		t.Error("s2 marked down despite suppress_state_changes")
	}
	if findMessage(c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id) != nil {
		t.Error("rerouted despite suppress_state_changes")
	}
	if queued(s1) != 1 {
		t.Error("post not waiting in s1's queue")
	}
}

func without(l []string, s string) []string {
	var out []string
	for _, v := range l {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}

// Limits: too many recipients get 452 4.5.3, connections beyond
// max_connections get 421, an overlong line is refused.
func TestSMTPLimits(t *testing.T) {
	yaml := strings.Replace(testOrg, "limits: {max_message_size: 200KB}", "limits: {max_message_size: 200KB, max_recipients: 2, max_connections: 2, max_line_length: 1000}", 1)
	c := startOrg(t, yaml)
	addr := c.Nodes["s1"].Org.ServerByName("s1").Listen.SMTP
	cl, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.Hello("client.test")
	cl.Mail("x@example.net", nil)
	cl.Rcpt("both@test.example", nil)
	cl.Rcpt("two@test.example", nil)
	err = cl.Rcpt("remote@test.example", nil)
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 {
		t.Errorf("third recipient: %v, want 452", err)
	}
	// A second connection is allowed, a third refused with 421.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	buf := make([]byte, 512)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c2.Read(buf); !strings.HasPrefix(string(buf[:n]), "220") {
		t.Fatalf("second connection: %q", buf[:n])
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c3.Read(buf); !strings.HasPrefix(string(buf[:n]), "421") {
		t.Errorf("third connection: %q, want 421", buf[:n])
	}
	// Overlong command line on the second connection.
	c2.Write([]byte("EHLO " + strings.Repeat("a", 2000) + "\r\n"))
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c2.Read(buf); !strings.HasPrefix(string(buf[:n]), "500") {
		t.Errorf("overlong line: %q, want 500", buf[:n])
	}
}

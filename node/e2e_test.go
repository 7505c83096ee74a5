package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/config"
	"pfrouter/routing"
	"pfrouter/store"
)

// testOrg: rg-a {s1, s2}, rg-b {s3, s4}, rg-c {s5}.
//
//	ab  (cost 10): s2 <-> s3      ab2 (cost 20): s1 <-> s4      ac (cost 30): s1 <-> s5
const testOrg = `
organization: Test
domains: [test.example]
secret: test-secret-0123456789abcdef0123456789
routing: {store_min_age: 48h, retry_initial: 200ms, retry_max: 1s, probe_interval: 500ms, hold_down: 500ms, failure_threshold: 2}
limits: {max_message_size: 200KB}
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [s2], rg-b: [s3]}}
  - {name: ab2, between: [rg-a, rg-b], cost: 20, bridgeheads: {rg-a: [s1], rg-b: [s4]}}
  - {name: ac, between: [rg-a, rg-c], cost: 30, bridgeheads: {rg-a: [s1], rg-c: [s5]}}
servers:
  - name: s1
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
      - {name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}
  - name: s2
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s2-young, kind: public, hierarchy: PF, created: "2099-01-01T00:00:00Z"}
  - name: s3
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s3-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
  - name: s4
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s4-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
      - {name: s4-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}
  - name: s5
    site: one
    routing_group: rg-c
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s5-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Remote, hierarchy: PF, addresses: [remote@test.example], replicas: [s4-pub]}
  - {path: /Both, hierarchy: PF, addresses: [both@test.example], replicas: [s1-pub, s4-pub]}
  - {path: /Two, hierarchy: PF, addresses: [two@test.example], replicas: [s3-pub, s5-pub]}
  - {path: /Closed, hierarchy: PF, addresses: [closed@test.example], replicas: [s1-pub], mail_enabled: false}
  - {path: /Board, hierarchy: PF, addresses: [board@test.example], replicas: [s1-pub], permissions: {Default: Reviewer, Anonymous: None}}
  - {path: /Small, hierarchy: PF, addresses: [small@test.example], replicas: [s1-pub], max_message_size: 1KB}
users:
  - {name: alice, addresses: [alice@test.example], mailbox_store: s1-mbx, password: alice-pw}
  - {name: dave, addresses: [dave@test.example], mailbox_store: s4-mbx, password: dave-pw}
`

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func parseOrg(t *testing.T, yaml string) *config.Org {
	t.Helper()
	org, err := config.Parse([]byte(yaml), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return org
}

func mbox(st, user string) store.MailboxRef {
	return store.MailboxRef{Store: st, User: user, Name: "INBOX"}
}

// startOrg starts the named servers of an organization in this process
// (every server when none is named), closed when the test ends.
func startOrg(t *testing.T, yaml string, names ...string) *Cluster {
	t.Helper()
	org := parseOrg(t, yaml)
	c, err := StartAll(context.Background(), org, names, Options{BaseDir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func post(t *testing.T, n *Node, from, to, subject string) (string, error) {
	t.Helper()
	msgID := fmt.Sprintf("<%s.%d@test>", strings.ReplaceAll(subject, " ", "-"), time.Now().UnixNano())
	body := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-Id: %s\r\n\r\nbody of %s\r\n", from, to, subject, msgID, subject)
	return msgID, sendRaw(n.Org.ServerByName(n.Name).Listen.SMTP, from, []string{to}, []byte(body))
}

// sendRaw is a plain (no STARTTLS) SMTP submission, as an anonymous
// Internet sender would make.
func sendRaw(addr, from string, to []string, body []byte) error {
	cl, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.SendMail(from, to, bytes.NewReader(body))
}

// waitMessage polls a store until a message containing needle appears.
func waitMessage(t *testing.T, n *Node, ref store.MailboxRef, needle string, within time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if b := findMessage(n, ref, needle); b != nil {
			return b
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("message %s not in %s on %s within %s", needle, ref, n.Name, within)
	return nil
}

func findMessage(n *Node, ref store.MailboxRef, needle string) []byte {
	msgs, err := n.Store.Messages(context.Background(), ref)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		b, err := n.Store.Body(context.Background(), ref, m.UID)
		if err == nil && bytes.Contains(b, []byte(needle)) {
			return b
		}
	}
	return nil
}

// receivedBy lists the servers named in Received headers, oldest first.
func receivedBy(b []byte) []string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return nil
	}
	var out []string
	for _, v := range h.Values("Received") {
		if m := byRE.FindStringSubmatch(v); m != nil {
			out = append([]string{m[1]}, out...)
		}
	}
	return out
}

var byRE = regexp.MustCompile(`\bby (\S+) \(pfrouter\)`)

func queued(n *Node) int {
	count := 0
	n.Queue.Scan(func(string, []byte) error { count++; return nil })
	return count
}

// R9, R13, S8: a post to a folder whose only replica is across a connector
// arrives there along the path `pfrouter route` gives, with a Received
// header per hop and the trace context carried.
func TestE2ERelayAcrossConnector(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	d := routing.Decide(s1.Directory.Snapshot(), s1.LinkState.Graph(), s1.Params(), routing.Input{At: "s1", Recipient: "remote@test.example", Now: time.Now()})
	if d.Outcome != routing.Deliver || strings.Join(d.Route, ">") != "s1>s2>s3>s4" {
		t.Fatalf("route decision: %s %v", d.Outcome, d.Route)
	}
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "across")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s2>s3>s4" {
		t.Errorf("Received headers show %s, route says s1>s2>s3>s4\n%s", got, b)
	}
	if bytes.Contains(b, []byte("X-Pfrouter")) {
		t.Errorf("relay metadata leaked into the delivered message:\n%s", b)
	}
	if !bytes.Contains(b, []byte("Traceparent: 00-")) {
		t.Errorf("no traceparent carried (S8):\n%s", b)
	}
	msgs, _ := c.Nodes["s4"].Store.Messages(context.Background(), store.MailboxRef{Store: "s4-pub", Name: "/Remote"})
	if len(msgs) != 1 || msgs[0].Class != config.ClassPost {
		t.Errorf("want one IPM.Post (R16), got %+v", msgs)
	}
}

// R3/R7: a local replica is preferred; R6: a young local hierarchy store is
// skipped in favour of the routing group's older one.
func TestE2ELocalReplicaAndYoungStore(t *testing.T) {
	c := startOrg(t, testOrg)
	id, err := post(t, c.Nodes["s1"], "alice@test.example", "both@test.example", "local")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s1"], store.MailboxRef{Store: "s1-pub", Name: "/Both"}, id, 10*time.Second)
	if got := receivedBy(b); len(got) != 1 || got[0] != "s1" {
		t.Errorf("local delivery went through %v", got)
	}
	id, err = post(t, c.Nodes["s2"], "alice@test.example", "both@test.example", "young")
	if err != nil {
		t.Fatal(err)
	}
	b = waitMessage(t, c.Nodes["s1"], store.MailboxRef{Store: "s1-pub", Name: "/Both"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s2>s1" {
		t.Errorf("young store not skipped: path %s", got)
	}
}

// R10: a connector marked down mid-test sends the next post to the other
// replica; with every path down the post waits, and goes out as soon as a
// connector comes back up.
func TestE2EConnectorDownAndQueue(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	id, err := post(t, s1, "alice@test.example", "two@test.example", "before")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s3"], store.MailboxRef{Store: "s3-pub", Name: "/Two"}, id, 10*time.Second)
	for _, cn := range []string{"ab", "ab2"} {
		if _, err := s1.LinkState.SetUp(cn, false, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	id, err = post(t, s1, "alice@test.example", "two@test.example", "after")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s5"], store.MailboxRef{Store: "s5-pub", Name: "/Two"}, id, 10*time.Second)

	// /Remote has its only replica in rg-b: every path is down now.
	id, err = post(t, s1, "alice@test.example", "remote@test.example", "waiting")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // several retry periods pass
	if findMessage(c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id) != nil {
		t.Fatal("delivered although every path was down")
	}
	if n := queued(s1); n != 1 {
		t.Fatalf("want the post waiting in s1's queue, queue holds %d", n)
	}
	if _, err := s1.LinkState.SetUp("ab2", true, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s4" {
		t.Errorf("path after ab2 came up: %s", got)
	}
}

// S1, S3, R15, R17, R11: refusals at RCPT with the right codes; nothing is
// queued.
func TestE2ERefusals(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	addr := s1.Org.ServerByName("s1").Listen.SMTP
	cases := []struct {
		rcpt string
		size int64
		code int
		enh  string
	}{
		{"nobody@test.example", 0, 550, "5.1.1"},
		{"someone@elsewhere.example", 0, 550, "5.7.1"},
		{"closed@test.example", 0, 550, "5.1.1"},
		{"board@test.example", 0, 550, "5.7.1"},
		{"small@test.example", 5000, 552, "5.2.3"},
	}
	for _, tc := range cases {
		cl, err := gosmtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		var opts *gosmtp.MailOptions
		if tc.size > 0 {
			opts = &gosmtp.MailOptions{Size: tc.size}
		}
		if err := cl.Mail("x@test.example", opts); err != nil {
			t.Fatal(err)
		}
		err = cl.Rcpt(tc.rcpt, nil)
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) || se.Code != tc.code || fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2]) != tc.enh {
			t.Errorf("RCPT %s: got %v, want %d %s", tc.rcpt, err, tc.code, tc.enh)
		}
		cl.Close()
	}
	cl, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	cl.Hello("client.test")
	err = cl.Mail("x@test.example", &gosmtp.MailOptions{Size: 10 << 20})
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Errorf("oversize MAIL: got %v, want 552 (S3)", err)
	}
	cl.Close()
	if n := queued(s1); n != 0 {
		t.Errorf("refused mail was queued: %d", n)
	}
}

// S6, S7: a post whose every path stays down expires into an RFC 3464
// report to the sender.
func TestE2EExpiryNDR(t *testing.T) {
	yaml := strings.Replace(testOrg, "retry_max: 1s,", "retry_max: 1s, message_expiry: 1s,", 1)
	c := startOrg(t, yaml)
	s1 := c.Nodes["s1"]
	for _, cn := range []string{"ab", "ab2"} {
		s1.LinkState.SetUp(cn, false, "test", time.Now())
	}
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "expires")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, s1, store.MailboxRef{Store: "s1-mbx", User: "alice", Name: "INBOX"}, id, 15*time.Second)
	if !bytes.Contains(b, []byte("multipart/report")) || !bytes.Contains(b, []byte("Status: 4.4.7")) {
		t.Fatalf("not a DSN with 4.4.7:\n%s", b)
	}
	// The report is in the mailbox before the queue drops the entries
	// (the expired post's and the report's own): poll, a loaded machine
	// takes a moment.
	eventually(t, 30*time.Second, "queue empty after the report was delivered", func() (bool, string) {
		n := queued(s1)
		return n == 0, fmt.Sprint(n, " queued")
	})
}

// S5: routing metadata and trace context from a client are removed and do
// not alter routing: only servers of the organization may send them.
func TestE2EHeaderInjection(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	id := "<inject@test>"
	body := "X-Pfrouter-Route: v=1&origin=forged&first=0&hops=99&visited=s1\r\n" +
		"X-Pfrouter-Rcpt: rcpt=remote@test.example&stage=target&server=s1&store=s1-pub\r\n" +
		"Traceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\n" +
		"Subject: injected\r\nMessage-Id: " + id + "\r\n\r\nhello\r\n"
	if err := sendRaw(s1.Org.ServerByName("s1").Listen.SMTP, "x@example.net", []string{"remote@test.example"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	if bytes.Contains(b, []byte("forged")) || bytes.Contains(b, []byte("1111111111111111")) {
		t.Errorf("client-supplied metadata survived:\n%s", b)
	}
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s2>s3>s4" {
		t.Errorf("injected metadata altered the route: %s", got)
	}
	if findMessage(s1, store.MailboxRef{Store: "s1-pub", Name: "/Remote"}, id) != nil {
		t.Error("delivered where the forged header said")
	}
}

// S2: a message is stored byte for byte, whatever its size (regression: a
// body past the header parser's 4 KB buffer lost its first part).
func TestE2ELargeBodyIntact(t *testing.T) {
	c := startOrg(t, testOrg)
	s1 := c.Nodes["s1"]
	var body strings.Builder
	for i := 0; body.Len() < 150_000; i++ {
		fmt.Fprintf(&body, "line %06d of a long post\r\n", i)
	}
	for _, size := range []int{100, 4000, 5000, 9000, 150_000} {
		id := fmt.Sprintf("<big-%d@test>", size)
		want := body.String()[:size]
		want = want[:strings.LastIndex(want, "\r\n")+2]
		msg := "Subject: size " + fmt.Sprint(size) + "\r\nMessage-Id: " + id + "\r\n\r\n" + want
		if err := sendRaw(s1.Org.ServerByName("s1").Listen.SMTP, "x@example.net", []string{"both@test.example"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := waitMessage(t, s1, store.MailboxRef{Store: "s1-pub", Name: "/Both"}, id, 10*time.Second)
		i := bytes.Index(got, []byte("\r\n\r\n"))
		if i < 0 || string(got[i+4:]) != want {
			t.Errorf("size %d: body altered: got %d bytes, want %d", size, len(got)-i-4, len(want))
		}
	}
}

// S5: SMTP AUTH goes through the login policy shared with IMAP4/POP3: a
// user logs in over STARTTLS on any server, a wrong password gets 535.
func TestE2ESMTPAuth(t *testing.T) {
	c := startOrg(t, testOrg)
	addr := c.Nodes["s1"].Org.ServerByName("s1").Listen.SMTP
	login := func(user, pw string) error {
		cl, err := gosmtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		return cl.Auth(sasl.NewPlainClient("", user, pw))
	}
	if err := login("alice", "alice-pw"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	var se *gosmtp.SMTPError
	if err := login("alice", "wrong"); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v, want 535", err)
	}
	if err := login("dave", "dave-pw"); err != nil { // mailbox on another server (s4)
		t.Fatalf("dave on s1: %v", err)
	}
}

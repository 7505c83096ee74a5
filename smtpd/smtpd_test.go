package smtpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"pfrouter/routing"
)

// Fakes at smtpd's seams: the Checker (routing's RCPT/MAIL checks), the
// Acceptor (the queue manager) and the Authenticator (the login policy).

type fakeChecker struct {
	rcpt   map[string]*routing.Check // by recipient
	sender map[string]*routing.Check // by "user|from"
}

func (f *fakeChecker) CheckRecipient(rcpt, sender, senderUser string, size int64) *routing.Check {
	return f.rcpt[rcpt]
}

func (f *fakeChecker) CheckSender(user, sender string) *routing.Check {
	if c, ok := f.sender[user+"|"+sender]; ok {
		return c
	}
	return nil
}

type fakeAcceptor struct {
	mu  sync.Mutex
	got []*Incoming
	err error
}

func (f *fakeAcceptor) Accept(ctx context.Context, m *Incoming) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.got = append(f.got, m)
	return fmt.Sprintf("Q%d", len(f.got)), nil
}

func (f *fakeAcceptor) last(t *testing.T) *Incoming {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("nothing was accepted")
	}
	return f.got[len(f.got)-1]
}

type fakeAuth map[string]Principal // "user:password" -> principal

func (f fakeAuth) Authenticate(ctx context.Context, username, password string, remote net.Addr, tls bool) (Principal, error) {
	if p, ok := f[username+":"+password]; ok {
		return p, nil
	}
	return Principal{}, errors.New("bad credentials")
}

type harness struct {
	srv  *Server
	addr string
	acc  *fakeAcceptor
	chk  *fakeChecker
}

func start(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	h := &harness{acc: &fakeAcceptor{}, chk: &fakeChecker{rcpt: map[string]*routing.Check{}, sender: map[string]*routing.Check{}}}
	o := Options{ServerName: "s1", Limits: Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 5}, MaxLineLength: 1000,
		Checker: h.chk, Acceptor: h.acc, Logger: slog.New(slog.DiscardHandler),
		Auth: fakeAuth{"alice:pw": {User: "alice"}, "s2:srv": {Server: "s2"}}}
	if mutate != nil {
		mutate(&o)
	}
	h.srv = New(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go h.srv.Serve(l)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

func (h *harness) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func code(t *testing.T, err error) (int, string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP reply, got %v", err)
	}
	return se.Code, fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

func send(c *smtp.Client, msg string) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// S1, R11, R15, R17: routing's RCPT-time verdicts map to the SMTP codes
// clients act on.
func TestRcptCheckCodes(t *testing.T) {
	h := start(t, nil)
	h.chk.rcpt["relay@example.net"] = &routing.Check{Code: "5.7.1", Reason: "relay access denied", Perm: true}
	h.chk.rcpt["big@x.example"] = &routing.Check{Code: "5.2.3", Reason: "too large", Perm: true}
	h.chk.rcpt["weird@x.example"] = &routing.Check{Code: "5.1.3", Reason: "bad syntax", Perm: true}
	h.chk.rcpt["later@x.example"] = &routing.Check{Code: "4.4.1", Reason: "try later", Perm: false}
	h.chk.rcpt["nobody@x.example"] = &routing.Check{Code: "5.1.1", Reason: "no such folder", Perm: true}
	c := h.dial(t)
	if err := c.Mail("x@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for rcpt, want := range map[string]string{"relay@example.net": "550 5.7.1", "big@x.example": "552 5.2.3",
		"weird@x.example": "501 5.1.3", "later@x.example": "450 4.4.1", "nobody@x.example": "550 5.1.1"} {
		n, enh := code(t, c.Rcpt(rcpt, nil))
		if got := fmt.Sprintf("%d %s", n, enh); got != want {
			t.Errorf("RCPT %s: %s, want %s", rcpt, got, want)
		}
	}
	if err := c.Rcpt("ok@x.example", nil); err != nil {
		t.Fatalf("accepted recipient refused: %v", err)
	}
	if err := send(c, "Subject: hi\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := h.acc.last(t).Recipients; len(got) != 1 || got[0] != "ok@x.example" {
		t.Errorf("queued recipients %v, want only the accepted one", got)
	}
}

// Limits: recipients per transaction, size announced in MAIL, size of DATA,
// and a reload's new limits apply to the next transaction.
func TestLimits(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	if n, enh := code(t, c.Mail("x@example.net", &smtp.MailOptions{Size: 2 << 20})); n != 552 || enh != "5.3.4" {
		t.Errorf("MAIL SIZE over the limit: %d %s, want 552 5.3.4", n, enh)
	}
	if err := c.Mail("x@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := c.Rcpt(fmt.Sprintf("r%d@x.example", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, enh := code(t, c.Rcpt("r5@x.example", nil)); n != 452 || enh != "4.5.3" {
		t.Errorf("sixth recipient: %d %s, want 452 4.5.3", n, enh)
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1100)
	if n, enh := code(t, send(c, big)); n != 552 || enh != "5.3.4" {
		t.Errorf("DATA over the limit: %d %s, want 552 5.3.4", n, enh)
	}

	// A reload raises the size limit and lowers the recipient limit.
	h.srv.SetLimits(Limits{MaxMessageBytes: 4 << 20, MaxRecipients: 1})
	if err := c.Mail("x@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("r0@x.example", nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := code(t, c.Rcpt("r1@x.example", nil)); n != 452 {
		t.Errorf("after SetLimits, second recipient: %d, want 452", n)
	}
	if err := send(c, big); err != nil {
		t.Errorf("after SetLimits raised the size limit, a 1.1 MB message: %v", err)
	}
}

// Issue 10 item 7: a header line longer than max_line_length is refused
// permanently (500 5.5.2), not with 451: a retry would fail the same way.
func TestLongHeaderLinePermanent(t *testing.T) {
	h := start(t, nil)
	// A raw session: go-smtp's server stops reading at the over-long line
	// and closes after its reply, so the client writes in the background
	// and reads the replies.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	reply := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (so far %q)", err, line)
			}
			if len(line) < 4 || line[3] != '-' {
				return line
			}
		}
	}
	reply() // greeting
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<x@example.net>", "RCPT TO:<ok@x.example>", "DATA"} {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		if line := reply(); line[0] != '2' && line[0] != '3' {
			t.Fatalf("%s: %q", cmd, line)
		}
	}
	go func() {
		io.WriteString(conn, "Subject: "+strings.Repeat("a", 1<<20)+"\r\n\r\nbody\r\n.\r\n")
	}()
	if line := reply(); !strings.HasPrefix(line, "500 5.5.2") {
		t.Errorf("1 MB header line: %q, want 500 5.5.2 line too long", line)
	}
	if len(h.acc.got) != 0 {
		t.Error("a message with an over-long line was queued")
	}
}

// S5, issue 10 item 7: every X-Pfrouter-* field and the trace context are
// removed from an untrusted client's message, whatever their case, folding
// or spacing; ordinary fields stay.
func TestStripsClientMetadata(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	if err := c.Mail("x@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ok@x.example", nil); err != nil {
		t.Fatal(err)
	}
	msg := "X-Pfrouter-By: mallory\r\n" +
		"x-pfrouter-queue-id:\r\n  FORGED-ID\r\n" +
		"X-PFROUTER-ROUTE: v=1&origin=evil&first=0&hops=0\r\n" +
		"X-Pfrouter-Rcpt : rcpt=ok@x.example&stage=target&server=s9&store=s9-pub\r\n" +
		"Traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n" +
		"TraceState: a=b\r\n" +
		"X-Other: kept\r\nSubject: hi\r\n\r\nX-Pfrouter-By: in the body stays\r\n"
	if err := send(c, msg); err != nil {
		t.Fatal(err)
	}
	in := h.acc.last(t)
	hdr := strings.ToLower(string(in.Body[:strings.Index(string(in.Body), "\r\n\r\n")]))
	for _, bad := range []string{"x-pfrouter", "traceparent", "tracestate", "forged-id", "mallory"} {
		if strings.Contains(hdr, bad) {
			t.Errorf("client-supplied %q survived in the header:\n%s", bad, hdr)
		}
	}
	if !strings.Contains(hdr, "x-other: kept") || !strings.Contains(hdr, "received: from") {
		t.Errorf("ordinary fields lost or Received missing:\n%s", hdr)
	}
	if !strings.Contains(string(in.Body), "X-Pfrouter-By: in the body stays") {
		t.Error("the body was altered")
	}
	if in.Route != nil || len(in.RcptMeta) != 0 || in.TraceParent != "" {
		t.Errorf("untrusted metadata taken: route %v rcpt %v traceparent %q", in.Route, in.RcptMeta, in.TraceParent)
	}
}

// AUTH refusals: wrong password and a mismatched authorization identity get
// 535 5.7.8; an authenticated user's forged MAIL FROM gets 553 5.7.1.
func TestAuthAndSenderRefusals(t *testing.T) {
	h := start(t, nil)
	h.chk.sender["alice|bob@x.example"] = &routing.Check{Code: "5.7.1", Reason: "not alice's address", Perm: true}
	c := h.dial(t)
	if n, enh := code(t, c.Auth(sasl.NewPlainClient("", "alice", "wrong"))); n != 535 || enh != "5.7.8" {
		t.Errorf("wrong password: %d %s, want 535 5.7.8", n, enh)
	}
	c2 := h.dial(t)
	if n, enh := code(t, c2.Auth(sasl.NewPlainClient("bob", "alice", "pw"))); n != 535 || enh != "5.7.8" {
		t.Errorf("authorization identity of another user: %d %s, want 535 5.7.8", n, enh)
	}
	c3 := h.dial(t)
	if err := c3.Auth(sasl.NewPlainClient("", "alice", "pw")); err != nil {
		t.Fatal(err)
	}
	if n, enh := code(t, c3.Mail("bob@x.example", nil)); n != 553 || enh != "5.7.1" {
		t.Errorf("forged MAIL FROM: %d %s, want 553 5.7.1", n, enh)
	}
	if err := c3.Mail("alice@x.example", nil); err != nil {
		t.Errorf("alice's own address: %v", err)
	}
}

// Issue 10 item 7: one client address cannot take every connection slot.
func TestPerIPConnectionCap(t *testing.T) {
	h := start(t, func(o *Options) { o.Limits.MaxConnectionsPerIP = 2 })
	first := h.dial(t)
	h.dial(t)
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") || !strings.Contains(line, "from your address") {
		t.Fatalf("third connection from one address: %q, want 421 4.7.0 too many connections from your address", line)
	}
	// A slot freed by a client that leaves is usable again.
	first.Quit()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := smtp.Dial(h.addr)
		if err == nil {
			cl.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The organization's own servers are not held to the per-address cap (as
// Postfix exempts $mynetworks): several servers on one host relay from one
// address, and a 421 at the greeting would mark a healthy next hop down.
// The server-wide cap still holds for them.
func TestPerIPCapExemptsOrganizationServers(t *testing.T) {
	h := start(t, func(o *Options) {
		o.Limits.MaxConnectionsPerIP = 2
		o.Limits.MaxConnections = 4
		o.Limits.PerIPExempt = []string{"127.0.0.1"}
	})
	for range 4 {
		h.dial(t) // beyond the per-address cap of 2: each gets its greeting
	}
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") || !strings.Contains(line, "too many connections, try again later") {
		t.Fatalf("fifth connection: %q, want the server-wide 421", line)
	}
}

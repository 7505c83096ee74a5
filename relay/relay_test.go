package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pfrouter/internal/trusttest"
	"pfrouter/servercred"
)

// fakeHop is a small next hop on go-smtp's server whose replies the test
// scripts: reply(cmd, arg) returns the error to answer MAIL, RCPT or DATA
// (the end of data) with, or nil.
type fakeHop struct {
	addr     string
	sessions atomic.Int32
	mu       sync.Mutex
	reply    func(cmd, arg string) error
	got      []string // bodies received
}

func startHop(t *testing.T, reply func(cmd, arg string) error) *fakeHop {
	t.Helper()
	// The hop is server b1 of the test organization (S5: STARTTLS with
	// organization certificates is mandatory between servers).
	return serveHop(t, hopID.ServerTLS(), reply)
}

// serveHop starts a fake hop offering STARTTLS with tlsCfg (none: nil).
func serveHop(t *testing.T, tlsCfg *tls.Config, reply func(cmd, arg string) error) *fakeHop {
	t.Helper()
	h := &fakeHop{reply: reply}
	srv := smtp.NewServer(h)
	srv.Domain = "hop.test"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = tlsCfg
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *fakeHop) NewSession(c *smtp.Conn) (smtp.Session, error) {
	// go-smtp starts a new session after STARTTLS: count TLS ones, one
	// per connection.
	if _, ok := c.TLSConnectionState(); ok {
		h.sessions.Add(1)
	}
	return &hopSession{h: h}, nil
}

func (h *fakeHop) answer(cmd, arg string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reply == nil {
		return nil
	}
	return h.reply(cmd, arg)
}

type hopSession struct{ h *fakeHop }

func (s *hopSession) Mail(from string, _ *smtp.MailOptions) error { return s.h.answer("MAIL", from) }
func (s *hopSession) Rcpt(to string, _ *smtp.RcptOptions) error   { return s.h.answer("RCPT", to) }
func (s *hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := s.h.answer("DATA", ""); err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.got = append(s.h.got, string(b))
	s.h.mu.Unlock()
	return nil
}
func (s *hopSession) Reset()        {}
func (s *hopSession) Logout() error { return nil }

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// hopID and selfID are the test organization's b1 (every fake hop) and a1
// (the relaying server).
var (
	hopID  = mustIdentity("b1")
	selfID = mustIdentity("a1")
)

func mustIdentity(name string) *servercred.Identity {
	org, err := servercred.New(trusttest.Secret)
	if err != nil {
		panic(err)
	}
	id, err := org.Identity(name)
	if err != nil {
		panic(err)
	}
	return id
}

func newClient() *Client {
	return &Client{Self: "a1", Timeout: 2 * time.Second, Identity: selfID,
		PeerAt: func(string) (string, bool) { return "b1", true }}
}

var body = []byte("Subject: t\r\n\r\nhello\r\n")

// Issue 10 item 2: replies to MAIL, RCPT and DATA are per-recipient
// answers (*ReplyError with code, enhanced code, text and recipients),
// never a connection error; a 421 closing the session is one.
func TestReplyClasses(t *testing.T) {
	cases := []struct {
		name  string
		reply func(cmd, arg string) error
		want  []string // per recipient: "" accepted, else "CMD code enh"
		conn  bool     // a *ConnError instead
	}{
		{"all accepted", nil, []string{"", ""}, false},
		{"one refused at RCPT", func(cmd, arg string) error {
			if cmd == "RCPT" && arg == "x@q.example" {
				return reply(550, smtp.EnhancedCode{5, 1, 1}, "no such folder")
			}
			return nil
		}, []string{"", "RCPT 550 5.1.1"}, false},
		{"552 at MAIL fails every recipient", func(cmd, _ string) error {
			if cmd == "MAIL" {
				return reply(552, smtp.EnhancedCode{5, 3, 4}, "message too big")
			}
			return nil
		}, []string{"MAIL 552 5.3.4", "MAIL 552 5.3.4"}, false},
		{"451 after DATA defers the accepted ones", func(cmd, arg string) error {
			switch {
			case cmd == "RCPT" && arg == "x@q.example":
				return reply(550, smtp.EnhancedCode{5, 1, 1}, "no")
			case cmd == "DATA":
				return reply(451, smtp.EnhancedCode{4, 3, 0}, "disk full")
			}
			return nil
		}, []string{"DATA 451 4.3.0", "RCPT 550 5.1.1"}, false},
		{"no enhanced code", func(cmd, _ string) error {
			if cmd == "RCPT" {
				return reply(450, smtp.NoEnhancedCode, "later")
			}
			return nil
		}, []string{"RCPT 450 ", "RCPT 450 "}, false},
		{"421 closes the session: a link failure", func(cmd, _ string) error {
			if cmd == "MAIL" {
				return reply(421, smtp.EnhancedCode{4, 3, 2}, "shutting down")
			}
			return nil
		}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hop := startHop(t, c.reply)
			cl := newClient()
			defer cl.Close()
			res, err := cl.Send(context.Background(), hop.addr, "s@q.example", []string{"f@q.example", "x@q.example"}, body)
			var ce *ConnError
			if c.conn {
				if !errors.As(err, &ce) {
					t.Fatalf("want a *ConnError, got %v %+v", err, res)
				}
				return
			}
			if err != nil {
				t.Fatalf("a reply came back as an error: %v", err)
			}
			for i, r := range res {
				got := ""
				if r.Err != nil {
					got = r.Err.Command + " " + strconv.Itoa(r.Err.Code) + " " + r.Err.Enhanced
					if r.Err.Addr != hop.addr || r.Err.Message == "" || !containsStr(r.Err.Rcpts, r.Rcpt) {
						t.Errorf("%s: reply error %+v", r.Rcpt, r.Err)
					}
					if r.Err.Permanent() != (r.Err.Code >= 500) {
						t.Errorf("Permanent() wrong for %d", r.Err.Code)
					}
				}
				if got != c.want[i] {
					t.Errorf("%s: %q, want %q", r.Rcpt, got, c.want[i])
				}
			}
		})
	}
}

// A MAIL refusal names every recipient of the transaction in its Rcpts,
// and its text reaches the caller (for the report).
func TestMailRefusalNamesRecipients(t *testing.T) {
	hop := startHop(t, func(cmd, _ string) error {
		if cmd == "MAIL" {
			return reply(552, smtp.EnhancedCode{5, 3, 4}, "message size 9000 exceeds the limit of 4096 bytes")
		}
		return nil
	})
	cl := newClient()
	defer cl.Close()
	res, err := cl.Send(context.Background(), hop.addr, "s@q.example", []string{"a@q.example", "b@q.example"}, body)
	if err != nil {
		t.Fatal(err)
	}
	re := res[0].Err
	if re == nil || strings.Join(re.Rcpts, ",") != "a@q.example,b@q.example" || !strings.Contains(re.Error(), "exceeds the limit of 4096") {
		t.Fatalf("reply error %+v", re)
	}
}

// Connection-level failures are *ConnError: refused, and a peer that
// never greets (timeout).
func TestConnectionFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	cl := newClient()
	defer cl.Close()
	var ce *ConnError
	if _, err := cl.Send(context.Background(), closed, "s@q.example", []string{"f@q.example"}, body); !errors.As(err, &ce) {
		t.Fatalf("refused: %v", err)
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // holds the connection open, says nothing
		}
	}()
	cl.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = cl.Send(context.Background(), silent.Addr().String(), "s@q.example", []string{"f@q.example"}, body)
	if !errors.As(err, &ce) {
		t.Fatalf("silent peer: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("silent peer took %s with a 300ms timeout", took)
	}
	if err := cl.Probe(context.Background(), silent.Addr().String()); err == nil {
		t.Fatal("probe of a silent peer succeeded")
	}
}

// Pooled sessions: consecutive messages to one hop reuse one session, a
// refusal does not spoil it, and a peer that dropped it is redialled.
func TestPooledSessions(t *testing.T) {
	var refuse atomic.Bool
	hop := startHop(t, func(cmd, _ string) error {
		if cmd == "MAIL" && refuse.Load() {
			return reply(550, smtp.EnhancedCode{5, 7, 1}, "not now")
		}
		return nil
	})
	cl := newClient()
	defer cl.Close()
	send := func() []RcptResult {
		t.Helper()
		res, err := cl.Send(context.Background(), hop.addr, "s@q.example", []string{"f@q.example"}, body)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	send()
	send()
	refuse.Store(true)
	if res := send(); res[0].Err == nil {
		t.Fatal("refusal not reported")
	}
	refuse.Store(false)
	if res := send(); res[0].Err != nil {
		t.Fatalf("session after a refusal: %v", res[0].Err)
	}
	if n := hop.sessions.Load(); n != 1 {
		t.Fatalf("%d sessions for four messages, want one pooled session", n)
	}
	hop.mu.Lock()
	got := len(hop.got)
	hop.mu.Unlock()
	if got != 3 {
		t.Fatalf("hop received %d messages, want 3", got)
	}
}

func containsStr(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// S5: between servers nothing travels in clear and only the expected
// server is talked to: a hop without STARTTLS, a hop whose certificate
// names another server or comes from another organization, and an address
// that is no server's are connection failures, and the hop sees no MAIL.
func TestS5RelayRefusesUnprovenHop(t *testing.T) {
	plain := func() *fakeHop { return serveHop(t, nil, nil) }
	withID := func(id *servercred.Identity) *fakeHop { return serveHop(t, id.ServerTLS(), nil) }
	foreign, err := servercred.New(trusttest.OtherSecret)
	if err != nil {
		t.Fatal(err)
	}
	foreignB1, err := foreign.Identity("b1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		hop  *fakeHop
		want string
	}{
		{"no STARTTLS", plain(), "does not offer STARTTLS"},
		{"certificate of another server", withID(mustIdentity("c1")), "certificate"},
		{"certificate of another organization", withID(foreignB1), "certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newClient().Send(context.Background(), c.hop.addr, "a@x.example", []string{"b@x.example"}, body)
			var ce *ConnError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a ConnError mentioning %q", err, c.want)
			}
			if c.hop.sessions.Load() != 0 || len(c.hop.got) != 0 {
				t.Errorf("the hop got a TLS session or a message")
			}
		})
	}
	cl := newClient()
	cl.PeerAt = func(string) (string, bool) { return "", false }
	if _, err := cl.Send(context.Background(), startHop(t, nil).addr, "a@x.example", []string{"b@x.example"}, body); err == nil ||
		!strings.Contains(err.Error(), "no server of the organization") {
		t.Errorf("relay to an address that is no server's: %v", err)
	}
}

// Issue 11: a pfrouter peer offers PIPELINING and CHUNKING, and a message
// goes as MAIL, RCPT and BDAT LAST in one write (one round trip, no dot
// stuffing); a peer without them gets MAIL, RCPT and DATA one by one with
// the message dot-stuffed. Both deliver the same octets, and replies map
// to recipients the same way.
func TestPipelinedAndStepwiseTransactions(t *testing.T) {
	dotty := []byte("Subject: dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n")
	for _, stepwise := range []bool{false, true} {
		t.Run(map[bool]string{false: "pipelined", true: "stepwise"}[stepwise], func(t *testing.T) {
			hop := startHop(t, func(cmd, arg string) error {
				if cmd == "RCPT" && arg == "x@q.example" {
					return reply(550, smtp.EnhancedCode{5, 1, 1}, "no such folder")
				}
				return nil
			})
			cl := newClient()
			defer cl.Close()
			s, err := cl.dial(context.Background(), hop.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if !s.pipelining || !s.chunking {
				t.Fatal("go-smtp's server offers PIPELINING and CHUNKING; the session did not see them")
			}
			if stepwise {
				s.pipelining, s.chunking = false, false
			}
			for i := 0; i < 2; i++ { // the second on the same session, without RSET
				res, err := s.send(context.Background(), hop.addr, "s@q.example", []string{"f@q.example", "x@q.example"}, dotty)
				if err != nil {
					t.Fatal(err)
				}
				if res[0].Err != nil || res[1].Err == nil || res[1].Err.Code != 550 || res[1].Err.Enhanced != "5.1.1" || res[1].Err.Message != "no such folder" {
					t.Fatalf("results %+v %+v", res[0].Err, res[1].Err)
				}
			}
			hop.mu.Lock()
			defer hop.mu.Unlock()
			if len(hop.got) != 2 || hop.got[0] != string(dotty) || hop.got[1] != string(dotty) {
				t.Fatalf("hop got %q", hop.got)
			}
		})
	}
}

// A pooled session the peer closed while it was idle is not a failure of
// the next message: it goes on a new session.
func TestStalePooledSessionIsRedialled(t *testing.T) {
	hop := startHop(t, nil)
	cl := newClient()
	defer cl.Close()
	send := func() {
		t.Helper()
		res, err := cl.Send(context.Background(), hop.addr, "s@q.example", []string{"f@q.example"}, body)
		if err != nil || res[0].Err != nil {
			t.Fatalf("send: %v %+v", err, res)
		}
	}
	send()
	cl.mu.Lock()
	for _, p := range cl.peers {
		for _, s := range p.idle {
			s.conn.Close() // the session breaks while idle (a peer timing it out)
		}
	}
	cl.mu.Unlock()
	send()
	if n := hop.sessions.Load(); n != 2 {
		t.Fatalf("%d sessions, want 2 (the stale one replaced)", n)
	}
}

// The sessions to one peer are bounded (MaxSessions): more concurrent
// senders wait for a free one rather than open more, and a sender whose
// context ends while it waits, or while its session is busy, gets a
// *ConnError at once.
func TestSessionsBoundedAndCutByContext(t *testing.T) {
	hop := startHop(t, func(cmd, _ string) error {
		if cmd == "DATA" {
			time.Sleep(200 * time.Millisecond) // a slow commit (the hop answers one at a time)
		}
		return nil
	})
	cl := newClient()
	cl.Timeout = 30 * time.Second
	cl.MaxSessions = 2
	defer cl.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := cl.Send(context.Background(), hop.addr, "s@q.example", []string{"f@q.example"}, body)
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for hop.sessions.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	var ce *ConnError
	if _, err := cl.Send(ctx, hop.addr, "s@q.example", []string{"f@q.example"}, body); !errors.As(err, &ce) || time.Since(start) > 5*time.Second {
		t.Fatalf("sender with an ended context while both sessions are busy: %v after %s", err, time.Since(start))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("send: %v", err)
		}
	}
	hop.mu.Lock()
	got := len(hop.got)
	hop.mu.Unlock()
	if n := hop.sessions.Load(); n > 2 || got < 6 {
		t.Fatalf("%d sessions for 6 concurrent senders with MaxSessions 2; hop got %d messages", n, got)
	}

	// A busy session is cut when its sender's context ends.
	stuck := startHop(t, func(cmd, _ string) error {
		if cmd == "DATA" {
			time.Sleep(5 * time.Second)
		}
		return nil
	})
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := cl.Send(ctx, stuck.addr, "s@q.example", []string{"f@q.example"}, body); !errors.As(err, &ce) || time.Since(start) > 3*time.Second {
		t.Fatalf("stuck peer: %v after %s", err, time.Since(start))
	}
}

// FuzzSplitEnhanced: any reply text splits without a panic, and an
// enhanced code taken off it has the reply's class and three numbers.
func FuzzSplitEnhanced(f *testing.F) {
	for _, s := range []string{"5.1.1 no such folder", "4.3.0", "2.0.0 OK", "5.1 x", "9.9.9 y", "", "5..1 z", "4.-1.0 w"} {
		f.Add(550, s)
	}
	f.Fuzz(func(t *testing.T, code int, msg string) {
		enh, rest := splitEnhanced(code, msg)
		if enh == "" {
			if rest != msg {
				t.Fatalf("no code taken, but the text changed: %q -> %q", msg, rest)
			}
			return
		}
		parts := strings.Split(enh, ".")
		if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) || !strings.HasPrefix(msg, enh) {
			t.Fatalf("code %d, text %q: enhanced %q", code, msg, enh)
		}
	})
}

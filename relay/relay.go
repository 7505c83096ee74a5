// Package relay is the SMTP client one pfrouter server uses to hand a
// message to the next hop (SPEC R13, S5): it connects, upgrades with
// STARTTLS (mandatory) presenting this server's organization certificate
// and verifying that the peer's names the expected server (package
// servercred), so the peer trusts the routing metadata and nothing
// replayable is ever sent, and sends one transaction for a group of
// recipients. It reports connection-level
// failures (which count towards marking a hop down, R13b) apart from the
// peer's per-recipient replies. It decides nothing: the queue manager does.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"pfrouter/servercred"
)

// ConnError is a failure to reach or talk to the next hop at all: refused,
// timed out, no STARTTLS, TLS or certificate failure, or the session broke.
type ConnError struct {
	Addr string
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("next hop %s: %v", e.Addr, e.Err) }
func (e *ConnError) Unwrap() error { return e.Err }

// Client relays to peers. It keeps a few idle sessions per peer so a busy
// route does not pay a TCP and TLS handshake per message.
type Client struct {
	Self string // this server's name (EHLO)
	// Identity is this server's organization certificate; STARTTLS uses
	// Identity.ClientTLS(peer). Required.
	Identity *servercred.Identity
	// PeerAt names the server of the organization whose SMTP listener is
	// addr; a relay to an address that is no server's fails. Required.
	PeerAt  func(addr string) (server string, ok bool)
	Timeout time.Duration

	mu   sync.Mutex
	idle map[string][]idleClient
}

// idleClient is a pooled session and when it went idle: sessions idle
// longer than maxIdleTime are dropped rather than reused, so peers can shut
// down and a half-dead session is not tried first.
type idleClient struct {
	cl    *smtp.Client
	since time.Time
}

const maxIdleTime = 30 * time.Second

// ReplyError is the next hop's refusal of recipients: at RCPT for one, at
// MAIL or DATA for every recipient of the transaction. It is an answer
// about the message (too large, unknown recipient, try later), never about
// the link: the queue manager fails the recipients on 5xx (a report
// carrying the peer's text) and retries them on 4xx, and does not count it
// towards the hop's health (R13b).
type ReplyError struct {
	Addr     string // the next hop
	Command  string // MAIL, RCPT or DATA
	Code     int    // the SMTP reply code, 400–599
	Enhanced string // RFC 3463 code ("5.3.4"), "" when the peer sent none
	Message  string
	Rcpts    []string // the recipients it applies to
}

func (e *ReplyError) Error() string {
	enh := e.Enhanced
	if enh != "" {
		enh += " "
	}
	return fmt.Sprintf("next hop %s answered %s with %d %s%s", e.Addr, e.Command, e.Code, enh, e.Message)
}

// Permanent reports a 5xx reply: the recipients fail rather than wait.
func (e *ReplyError) Permanent() bool { return e.Code >= 500 }

// RcptResult is the peer's answer for one recipient; Err nil is accepted.
type RcptResult struct {
	Rcpt string
	Err  *ReplyError
}

const maxIdle = 4

// Send relays one message to addr for rcpts. The error, when not nil, is
// a *ConnError: the link failed (dial, TLS, greeting, authentication,
// timeout, broken session, or a 421 closing the session) and nothing is
// known to be handed over. Otherwise each recipient has the peer's
// verdict: nil, or the *ReplyError of the RCPT, MAIL or DATA reply that
// refused it.
func (c *Client) Send(ctx context.Context, addr, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	cl, err := c.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	res, err := transaction(addr, cl, from, rcpts, body)
	if err != nil {
		cl.Close()
		return nil, &ConnError{addr, err}
	}
	c.put(addr, cl)
	return res, nil
}

// transaction runs MAIL, RCPT and DATA. A reply refuses recipients (see
// ReplyError); any other failure is returned and ends the session.
func transaction(addr string, cl *smtp.Client, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	out := make([]RcptResult, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
	}
	// refuse gives every recipient still accepted the reply of a
	// message-level command, or returns the error that ends the session.
	refuse := func(cmd string, err error) ([]RcptResult, error) {
		re := replyError(addr, cmd, err)
		if re == nil {
			return nil, err
		}
		for i := range out {
			if out[i].Err == nil {
				re.Rcpts = append(re.Rcpts, out[i].Rcpt)
			}
		}
		for i := range out {
			if out[i].Err == nil {
				out[i].Err = re
			}
		}
		return out, nil
	}
	if err := cl.Mail(from, &smtp.MailOptions{Size: int64(len(body))}); err != nil {
		return refuse("MAIL", err)
	}
	accepted := 0
	for i, r := range rcpts {
		if err := cl.Rcpt(r, nil); err != nil {
			re := replyError(addr, "RCPT", err)
			if re == nil {
				return nil, err
			}
			re.Rcpts = []string{r}
			out[i].Err = re
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return out, cl.Reset()
	}
	w, err := cl.Data()
	if err != nil {
		return refuse("DATA", err)
	}
	if _, err := w.Write(body); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return refuse("DATA", err)
	}
	return out, nil
}

// replyError turns a peer's reply into a *ReplyError, or nil when err is
// not a reply, or is 421: the peer is closing the session (shutting down,
// too busy), which is the link's state, not an answer about the message.
func replyError(addr, cmd string, err error) *ReplyError {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 || se.Code == 421 {
		return nil
	}
	re := &ReplyError{Addr: addr, Command: cmd, Code: se.Code, Message: se.Message}
	if e := se.EnhancedCode; e != (smtp.EnhancedCode{}) && e[0] > 0 {
		re.Enhanced = fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
	}
	return re
}

func (c *Client) get(ctx context.Context, addr string) (*smtp.Client, error) {
	c.mu.Lock()
	for len(c.idle[addr]) > 0 {
		l := c.idle[addr]
		ic := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		if time.Since(ic.since) < maxIdleTime && ic.cl.Reset() == nil {
			return ic.cl, nil
		}
		ic.cl.Close()
		c.mu.Lock()
	}
	c.mu.Unlock()
	return c.dial(ctx, addr)
}

func (c *Client) put(addr string, cl *smtp.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		c.idle = map[string][]idleClient{}
	}
	if len(c.idle[addr]) >= maxIdle {
		go cl.Quit()
		return
	}
	c.idle[addr] = append(c.idle[addr], idleClient{cl, time.Now()})
}

func (c *Client) dial(ctx context.Context, addr string) (*smtp.Client, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnError{addr, err}
	}
	conn.SetDeadline(time.Now().Add(timeout))
	cfg, err := c.tlsFor(addr)
	if err != nil {
		conn.Close()
		return nil, &ConnError{addr, err}
	}
	// STARTTLS is done before go-smtp's client takes over so that the EHLO
	// it sends afterwards carries this server's name.
	tconn, err := startTLS(conn, c.Self, cfg)
	if err != nil {
		conn.Close()
		return nil, &ConnError{addr, err}
	}
	conn.SetDeadline(time.Time{})
	cl := smtp.NewClient(tconn)
	cl.CommandTimeout = timeout
	cl.SubmissionTimeout = 2 * timeout
	fail := func(err error) (*smtp.Client, error) {
		cl.Close()
		return nil, &ConnError{addr, err}
	}
	if err := cl.Hello(c.Self); err != nil {
		return fail(err)
	}
	// No AUTH: the client certificate of the handshake is the proof.
	return cl, nil
}

// tlsFor is the STARTTLS config for the server listening at addr.
func (c *Client) tlsFor(addr string) (*tls.Config, error) {
	if c.Identity == nil || c.PeerAt == nil {
		return nil, errors.New("relay has no server identity: cannot prove itself to peers")
	}
	peer, ok := c.PeerAt(addr)
	if !ok {
		return nil, fmt.Errorf("no server of the organization listens at %s", addr)
	}
	return c.Identity.ClientTLS(peer), nil
}

// Probe checks that a peer answers SMTP (used to bring a hop back up).
func (c *Client) Probe(ctx context.Context, addr string) error {
	cl, err := c.dial(ctx, addr)
	if err != nil {
		return err
	}
	cl.Quit()
	return nil
}

// Close closes idle sessions.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.idle {
		for _, ic := range l {
			ic.cl.Quit()
		}
	}
	c.idle = nil
}

// startTLS reads the greeting, says EHLO, and upgrades with STARTTLS. It
// returns a conn on which a fresh greeting is replayed for go-smtp's
// client. A peer that does not offer STARTTLS is refused: between servers
// nothing travels in clear (S5).
func startTLS(conn net.Conn, self string, cfg *tls.Config) (net.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", self); err != nil {
		return nil, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	hasTLS := false
	for _, l := range strings.Split(msg, "\n") {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			hasTLS = true
		}
	}
	if !hasTLS {
		_ = tp.PrintfLine("QUIT")
		return nil, errors.New("peer does not offer STARTTLS; refusing to relay in clear")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return &replayConn{Conn: tc, pending: []byte("220 " + self + " ready\r\n")}, nil
}

// replayConn yields pending bytes before reading from the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

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

// Client relays to peers. It keeps sessions per peer so a busy route does
// not pay a TCP and TLS handshake per message, and bounds how many run at
// once to one peer (MaxSessions): more senders wait for a free session.
type Client struct {
	Self string // this server's name (EHLO)
	// Identity is this server's organization certificate; STARTTLS uses
	// Identity.ClientTLS(peer). Required.
	Identity *servercred.Identity
	// PeerAt names the server of the organization whose SMTP listener is
	// addr; a relay to an address that is no server's fails. Required.
	PeerAt  func(addr string) (server string, ok bool)
	Timeout time.Duration
	// MaxSessions bounds the sessions open to one peer, busy and idle
	// (0: DefaultMaxSessions).
	MaxSessions int

	mu    sync.Mutex
	peers map[string]*peer
}

// peer is the pool of sessions to one address: slots holds a token per
// session in use; idle sessions hold none, and one is dialled only when
// none is idle, so at most MaxSessions are open at once.
type peer struct {
	slots chan struct{}
	idle  []*session
}

// DefaultMaxSessions is the default bound on sessions to one peer: more
// than a busy server's concurrent senders (16 workers, and the clients
// whose messages are relayed before their 250), as Postfix's
// default_destination_concurrency_limit (20) bounds its smtp clients.
const DefaultMaxSessions = 32

// Sessions idle longer than maxIdleTime are dropped rather than reused,
// so peers can shut down and a half-dead session is not tried first.
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

// Send relays one message to addr for rcpts. The error, when not nil, is
// a *ConnError: the link failed (dial, TLS, greeting, authentication,
// timeout, broken session, ctx ended, or a 421 closing the session) and
// nothing is known to be handed over. Otherwise each recipient has the
// peer's verdict: nil, or the *ReplyError of the RCPT, MAIL or DATA
// (end of data, also for BDAT) reply that refused it.
func (c *Client) Send(ctx context.Context, addr, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	p := c.peer(addr)
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, &ConnError{addr, fmt.Errorf("waiting for a free session: %w", ctx.Err())}
	}
	defer func() { <-p.slots }()
	s, pooled := c.idle(p)
	for {
		if s == nil {
			var err error
			if s, err = c.dial(ctx, addr); err != nil {
				return nil, err
			}
		}
		res, err := s.send(ctx, addr, from, rcpts, body)
		if err == nil {
			s.since = time.Now()
			c.mu.Lock()
			p.idle = append(p.idle, s)
			c.mu.Unlock()
			return res, nil
		}
		s.close()
		// A pooled session the peer had closed fails before any
		// answer: nothing was handed over, so a new session sends it
		// (at worst the peer took it and then failed: the final store
		// deduplicates by origin id).
		if pooled && errors.Is(err, errNoReply) && ctx.Err() == nil {
			s, pooled = nil, false
			continue
		}
		return nil, &ConnError{addr, err}
	}
}

func (c *Client) peer(addr string) *peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers == nil {
		c.peers = map[string]*peer{}
	}
	p := c.peers[addr]
	if p == nil {
		n := c.MaxSessions
		if n <= 0 {
			n = DefaultMaxSessions
		}
		p = &peer{slots: make(chan struct{}, n)}
		c.peers[addr] = p
	}
	return p
}

// idle takes the most recently used idle session of p, closing those idle
// too long; nil when there is none.
func (c *Client) idle(p *peer) (*session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(s.since) < maxIdleTime {
			return s, true
		}
		go s.quit()
	}
	return nil, false
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

func (c *Client) dial(ctx context.Context, addr string) (*session, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	cfg, err := c.tlsFor(addr)
	if err != nil {
		return nil, &ConnError{addr, err}
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnError{addr, err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// No AUTH: the client certificate of the handshake is the proof.
	s, err := openSession(conn, c.Self, cfg, timeout)
	if err != nil {
		conn.Close()
		return nil, &ConnError{addr, err}
	}
	return s, nil
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
	s, err := c.dial(ctx, addr)
	if err != nil {
		return err
	}
	s.quit()
	return nil
}

// Close closes idle sessions.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		for _, s := range p.idle {
			s.quit()
		}
		p.idle = nil
	}
}

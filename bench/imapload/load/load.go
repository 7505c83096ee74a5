// Package load is the IMAP load generator behind bench/imapload: logins per
// second (connect, optional STARTTLS, LOGIN, LOGOUT, repeated), and FETCH
// throughput over a selected INBOX (BODY.PEEK[HEADER] or BODY.PEEK[] of
// every message, repeated). It also has the two helpers a benchmark script
// needs around those runs: APPEND a number of messages (to populate a
// server that has no SMTP side, e.g. a standalone Dovecot) and wait until
// INBOX holds a number of messages (mail delivered over SMTP arrives
// asynchronously). Targets must be on loopback.
//
// Neighbours: bench/smtpload is the SMTP counterpart; bench/imap_test.go
// uses Dial and FetchAll in-process; bench/scripts/imap.sh drives the
// command against pfrouter and Dovecot.
package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Mode is what a run does.
type Mode string

// The modes.
const (
	ModeLogin        Mode = "login"         // connect (+STARTTLS) + LOGIN + LOGOUT per operation
	ModeFetchHeaders Mode = "fetch-headers" // FETCH 1:* (BODY.PEEK[HEADER]) per operation
	ModeFetchBodies  Mode = "fetch-bodies"  // FETCH 1:* (BODY.PEEK[]) per operation
	ModeAppend       Mode = "append"        // APPEND one Size-byte message per operation
	ModeWait         Mode = "wait"          // poll SELECT INBOX until it holds Expect messages
)

// Config is one run.
type Config struct {
	Addr     string // host:port, loopback only
	User     string
	Pass     string
	StartTLS bool // STARTTLS before LOGIN (certificate not verified: loopback only)
	Mode     Mode
	Conns    int           // concurrent sessions
	N        int           // operations in all (0: until Duration)
	Duration time.Duration // stop starting operations after this long (0: no limit)
	Timeout  time.Duration // per-operation I/O deadline (default 60s)
	Mailbox  string        // default INBOX
	Size     int           // append: message size in bytes (default 8192)
	Expect   int           // wait: messages INBOX must hold
}

func (c *Config) check() error {
	if c.Mailbox == "" {
		c.Mailbox = "INBOX"
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Size <= 0 {
		c.Size = 8192
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	switch c.Mode {
	case ModeLogin, ModeFetchHeaders, ModeFetchBodies, ModeAppend:
		if c.N <= 0 && c.Duration <= 0 {
			return errors.New("a run needs a bound: -n or -duration (or both)")
		}
	case ModeWait:
		if c.Expect <= 0 {
			return errors.New("mode wait needs -expect > 0")
		}
		if c.Duration <= 0 {
			c.Duration = 2 * time.Minute
		}
	default:
		return fmt.Errorf("unknown mode %q (login, fetch-headers, fetch-bodies, append, wait)", c.Mode)
	}
	if c.User == "" {
		return errors.New("a user name is required (-user)")
	}
	return CheckLoopback(c.Addr)
}

// CheckLoopback refuses targets outside 127.0.0.0/8 and ::1: this tool
// generates load and must not be pointed at someone else's server.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("address %q: want host:port", addr)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address (127.0.0.0/8, ::1, localhost): refused", addr)
	}
	return nil
}

// insecureTLS is for STARTTLS to loopback test servers with self-signed
// certificates; CheckLoopback keeps it from going anywhere else.
var insecureTLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}

// Session is a logged-in IMAP client whose every operation is bounded by a
// deadline on its connection.
type Session struct {
	*imapclient.Client
	conn    net.Conn
	timeout time.Duration
}

// Deadline arms the connection deadline for the next operation.
func (s *Session) Deadline() { s.conn.SetDeadline(time.Now().Add(s.timeout)) }

// Dial connects to cfg.Addr, negotiates STARTTLS when cfg.StartTLS, and
// logs in as cfg.User. The caller must Close (or Logout) the session.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.Addr, err)
	}
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	opts := &imapclient.Options{TLSConfig: insecureTLS}
	var c *imapclient.Client
	if cfg.StartTLS {
		if c, err = imapclient.NewStartTLS(conn, opts); err != nil {
			conn.Close()
			return nil, fmt.Errorf("STARTTLS with %s: %w", cfg.Addr, err)
		}
	} else {
		c = imapclient.New(conn, opts)
	}
	if err := c.Login(cfg.User, cfg.Pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("LOGIN %s at %s: %w", cfg.User, cfg.Addr, err)
	}
	return &Session{Client: c, conn: conn, timeout: cfg.Timeout}, nil
}

// Run executes cfg and reports what it measured. Operation failures are
// counted in the result; an error means the run could not start (bad
// config, or no session could be set up).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Mode == ModeWait {
		return wait(ctx, cfg)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	tick := newTicket(cfg.N)
	rec := newRecorder()
	// Sessions are set up before the clock starts for the fetch and append
	// modes: their throughput is per command, not per login.
	var workers []op
	for range cfg.Conns {
		w, err := newWorker(ctx, cfg, rec)
		if err != nil {
			for _, o := range workers {
				o.close()
			}
			return nil, err
		}
		workers = append(workers, w)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for ctx.Err() == nil && tick.take() {
				t0 := time.Now()
				msgs, bytes, err := w.do(ctx)
				rec.add(time.Since(t0), msgs, bytes, err)
				if err != nil && w.broken() {
					return
				}
			}
		}()
	}
	wg.Wait()
	return rec.result(cfg, time.Since(start)), nil
}

// ticket hands out at most n operations (unlimited when n <= 0).
type ticket struct {
	mu   sync.Mutex
	left int
	inf  bool
}

func newTicket(n int) *ticket { return &ticket{left: n, inf: n <= 0} }

func (t *ticket) take() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inf {
		return true
	}
	if t.left <= 0 {
		return false
	}
	t.left--
	return true
}

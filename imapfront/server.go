// Package imapfront is the IMAP4 front end every pfrouter server runs on
// ports 143 (STARTTLS) and 993 (implicit TLS) (SPEC A1, A2, A5). It speaks
// only the not-authenticated state: greeting, CAPABILITY, NOOP, LOGOUT, ID,
// STARTTLS, LOGIN and AUTHENTICATE (PLAIN, SCRAM-SHA-256). The auth policy
// decides each login; then the session is handed over to the local IMAP
// server (Local, the imapd package) when the mailbox is here, or proxied to
// the mailbox server's IMAP listener, which this front end logs in to as a
// server acting for the user (servercred), relaying bytes both ways.
//
// Neighbours: auth decides logins; imapd serves authenticated sessions;
// pop3d is the POP3 counterpart; DialAuthenticated is reusable by any
// component that needs an authenticated IMAP connection to a peer.
package imapfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"pfrouter/auth"
	"pfrouter/internal/connlimit"
)

// Local serves an already-authenticated IMAP session on conn; imapd.Server
// satisfies it. It returns when the session ends.
type Local interface {
	ServeConn(conn net.Conn, user string) error
}

// Policy decides logins; *auth.Policy satisfies it.
type Policy interface {
	Authenticate(ctx context.Context, r auth.Request) (auth.Decision, error)
	SCRAM(ctx context.Context, proto auth.Protocol, tls bool, remote net.Addr) (*auth.SCRAMConversation, error)
	Check(ctx context.Context, proto auth.Protocol, mech string, tls bool, remote net.Addr) error
	PlainAllowed(tls bool) bool
	SASLMechanisms(tls bool) []string
}

// Options configures a Server. ServerName, Policy and Local are required.
type Options struct {
	ServerName string
	Policy     Policy
	Local      Local
	// TLSConfig is the server certificate: STARTTLS on Serve, implicit TLS
	// on ServeTLS. nil: no STARTTLS and no ServeTLS.
	TLSConfig *tls.Config
	Logger    *slog.Logger
	// PeerTLS gives the client TLS configuration for STARTTLS to mailbox
	// server `server` (servercred.Identity.ClientTLS): it presents this
	// server's organization certificate, which is what the proxied login
	// (SASL EXTERNAL) rests on, and verifies the peer's.
	PeerTLS func(server string) *tls.Config
	// Capabilities are announced in the OK of a local login; default: the
	// Local's Capabilities() if it has that method, else "IMAP4rev1
	// IMAP4rev2".
	Capabilities []string
	// PreAuthTimeout closes a connection that sends nothing for this long
	// before logging in. Default 2 minutes.
	PreAuthTimeout time.Duration
	// DialTimeout bounds connecting and logging in to a mailbox server.
	// Default 15 seconds.
	DialTimeout time.Duration
	// MaxConnsPerIP and MaxConnsPerUser cap open sessions from one client
	// IP (counted until login; a peer server's proxied sessions stop
	// counting against its address once it has logged in) and of one user.
	// 0: the connlimit defaults; < 0: no limit.
	MaxConnsPerIP, MaxConnsPerUser int
	// WarmConns is how many connections per mailbox server are kept
	// connected and past STARTTLS, ready for a proxied login (see
	// warmPool). Default 2; negative: none.
	WarmConns int
}

// Server is an IMAP front end. Serve and ServeTLS may run on several
// listeners at once.
type Server struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup

	pool *warmPool
	lim  *connlimit.Limiter
}

// New builds a Server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PreAuthTimeout <= 0 {
		opts.PreAuthTimeout = 2 * time.Minute
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 15 * time.Second
	}
	if len(opts.Capabilities) == 0 {
		if c, ok := opts.Local.(interface{ Capabilities() []string }); ok {
			opts.Capabilities = c.Capabilities()
		}
	}
	if len(opts.Capabilities) == 0 {
		opts.Capabilities = []string{"IMAP4rev1", "IMAP4rev2"}
	}
	if opts.WarmConns == 0 {
		opts.WarmConns = 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, log: opts.Logger.With("component", "imapfront", "server", opts.ServerName),
		ctx: ctx, cancel: cancel, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
	s.pool = newWarmPool(s, opts.WarmConns)
	s.lim = connlimit.New(opts.MaxConnsPerIP, opts.MaxConnsPerUser)
	return s
}

// Serve accepts plain connections (port 143, STARTTLS available). It
// returns nil after Close.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections (port 993) on a plain listener.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imapfront: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(tls.NewListener(l, s.opts.TLSConfig), true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	if !s.track(l, nil) {
		l.Close()
		return nil
	}
	defer s.untrack(l, nil)
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("imapfront: accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		if !s.track(nil, conn) {
			conn.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(nil, conn)
			defer conn.Close()
			release, ok := s.lim.IP(conn.RemoteAddr())
			if !ok {
				s.refuseConn(conn)
				return
			}
			ss := newSession(s, conn, implicitTLS)
			ss.releaseIP = release
			defer ss.releaseSlots()
			ss.run()
		}()
	}
}

// refuseConn turns away a connection over the per-IP cap with a BYE
// greeting (RFC 9051 7.1.5).
func (s *Server) refuseConn(conn net.Conn) {
	s.log.Warn("too many connections from one address", "remote", conn.RemoteAddr().String(), "limit", s.opts.MaxConnsPerIP)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n")
}

func (s *Server) track(l net.Listener, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if l != nil {
		s.listeners[l] = struct{}{}
	}
	if c != nil {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *Server) untrack(l net.Listener, c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, l)
	delete(s.conns, c)
}

// startGoroutine counts a background goroutine in wg unless the server is
// closed; the goroutine calls wg.Done.
func (s *Server) startGoroutine() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the listeners and ends every session, including handed-over
// and proxied ones, and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.pool.close()
	s.wg.Wait()
	return nil
}

package pop3d

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"pfrouter/internal/connlimit"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("pop3d: server closed")

const (
	defaultIdleTimeout    = 10 * time.Minute
	defaultMaxBadCommands = 10
)

// Server is a POP3 server. One Server may Serve several listeners (for
// example 110 with STLS and 995 with implicit TLS).
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
	lim       *connlimit.Limiter // per-IP and per-user session caps
}

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil {
		return nil, errors.New("pop3d: Options.Auth is required")
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("pop3d: no Options.Hostname and os.Hostname failed: %w", err)
		}
		opts.Hostname = h
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.MaxBadCommands <= 0 {
		opts.MaxBadCommands = defaultMaxBadCommands
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:      opts,
		log:       opts.Logger.With("component", "pop3d"),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		lim:       connlimit.New(opts.MaxConnsPerIP, opts.MaxConnsPerUser),
	}, nil
}

// Serve accepts connections on l until Close, serving each in its own
// goroutine. A tls.Listener gives implicit TLS (pop3s). It returns
// ErrServerClosed after Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Transient (e.g. too many open files): back off, like net/http.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pop3d: accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

// ServeConn serves one already-accepted connection and returns when the
// session ends. A *tls.Conn is treated as implicit TLS.
func (s *Server) ServeConn(c net.Conn) {
	if !s.track(c) {
		c.Close()
		return
	}
	defer s.wg.Done()
	defer s.untrack(c)
	s.serveConn(c)
}

// Close stops all listeners, drops every session (which, per RFC 1939,
// deletes nothing) and waits for the sessions to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers c and counts its session in wg; both happen under mu so
// Close cannot start waiting between them.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

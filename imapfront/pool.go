package imapfront

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"
)

// warmMaxAge is how long a warm connection may wait for a login: well
// under the pre-login timeout of IMAP servers (pfrouter's is 2 minutes by
// default), so a connection taken from the pool is not about to be dropped.
const warmMaxAge = 30 * time.Second

// warmPool keeps a few connections per mailbox server already past
// STARTTLS and waiting for AUTHENTICATE, so that a proxied login (A5)
// costs one round trip to the mailbox server instead of a TCP connect,
// STARTTLS and a TLS handshake. A server is only kept warm once a login
// was proxied to it; each take starts a refill in the background.
type warmPool struct {
	s    *Server
	size int

	mu      sync.Mutex
	closed  bool
	idle    map[target][]warmConn
	filling map[target]bool
}

// target is a mailbox server and the address it is reached at.
type target struct{ server, addr string }

type warmConn struct {
	tc   *tls.Conn
	born time.Time
}

func newWarmPool(s *Server, size int) *warmPool {
	return &warmPool{s: s, size: size, idle: map[target][]warmConn{}, filling: map[target]bool{}}
}

// take returns a warm connection to addr, or nil when none is ready.
func (p *warmPool) take(addr target) *tls.Conn {
	if p.size <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var tc *tls.Conn
	list := p.idle[addr]
	for len(list) > 0 && tc == nil {
		w := list[0]
		list = list[1:]
		if time.Since(w.born) < warmMaxAge {
			tc = w.tc
		} else {
			w.tc.Close()
		}
	}
	p.idle[addr] = list
	p.refillLocked(addr)
	return tc
}

// refillLocked starts filling addr's pool unless a fill runs or it is full.
func (p *warmPool) refillLocked(addr target) {
	if p.closed || p.filling[addr] || len(p.idle[addr]) >= p.size {
		return
	}
	// The fill is one of the server's goroutines: Close waits for it.
	if !p.s.startGoroutine() {
		return
	}
	p.filling[addr] = true
	go func() {
		defer p.s.wg.Done()
		p.fill(addr)
	}()
}

func (p *warmPool) fill(addr target) {
	for {
		p.mu.Lock()
		if p.closed || len(p.idle[addr]) >= p.size {
			p.filling[addr] = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.s.ctx, p.s.opts.DialTimeout)
		tc, err := dialStartTLS(ctx, addr.addr, p.s.peerTLS(addr.server))
		cancel()
		p.mu.Lock()
		if err != nil || p.closed {
			if err == nil {
				tc.Close()
			} else if !errors.Is(err, context.Canceled) {
				// Logins still dial on their own; they report the failure.
				p.s.log.Debug("warm connection to mailbox server failed", "server", addr.server, "addr", addr.addr, "err", err)
			}
			p.filling[addr] = false
			p.mu.Unlock()
			return
		}
		p.idle[addr] = append(p.idle[addr], warmConn{tc: tc, born: time.Now()})
		p.mu.Unlock()
	}
}

// close drops every warm connection; fills in flight end on the server's
// context.
func (p *warmPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, list := range p.idle {
		for _, w := range list {
			w.tc.Close()
		}
		delete(p.idle, addr)
	}
}

// peerTLS is the TLS config for mailbox server `server`; nil when none is
// configured (dialing then fails: STARTTLS with a verified peer is
// mandatory).
func (s *Server) peerTLS(server string) *tls.Config {
	if s.opts.PeerTLS == nil {
		return nil
	}
	return s.opts.PeerTLS(server)
}

// dialBackend logs in to mailbox server `server` at addr for a proxied
// session acting for authzid, on a warm connection when there is one. A
// warm connection the server dropped meanwhile fails its login with an I/O
// error; then a fresh connection is dialed. A refusal (BackendError) is
// final.
func (s *Server) dialBackend(ctx context.Context, server, addr, authzid string) (*BackendConn, error) {
	if tc := s.pool.take(target{server, addr}); tc != nil {
		bc, err := authenticate(ctx, tc, addr, authzid)
		if err == nil {
			return bc, nil
		}
		tc.Close()
		var be *BackendError
		if errors.As(err, &be) || ctx.Err() != nil {
			return nil, err
		}
		s.log.Debug("warm connection to mailbox server was stale; dialing", "addr", addr, "err", err)
	}
	conn, err := DialAuthenticated(ctx, addr, s.peerTLS(server), authzid)
	if err != nil {
		return nil, err
	}
	return conn.(*BackendConn), nil
}

// Package tlssniff lets one listening socket serve TLS and plain clients:
// it reads the first byte of each connection and hands out a *tls.Conn
// when it starts a TLS handshake (a record of type 22), the plain
// connection otherwise. node puts it under the admin listener, so the
// operator's CLI keeps calling plain HTTP on loopback while peer servers
// call the same port over TLS with their organization certificates
// (servercred); net/http sees a *tls.Conn and fills Request.TLS.
package tlssniff

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// recordHandshake is the first byte of every TLS ClientHello.
const recordHandshake = 0x16

// Options bound what a client that has not said anything yet can hold.
type Options struct {
	// FirstByte is how long a new connection may stay silent before it
	// is closed (default 10 s).
	FirstByte time.Duration
	// MaxPending is how many connections may be waiting for their first
	// byte at once (default 256); Accept of the raw listener pauses while
	// that many are pending.
	MaxPending int
}

// Listener is a net.Listener handing out TLS or plain connections.
type Listener struct {
	inner net.Listener
	cfg   *tls.Config
	o     Options
	out   chan net.Conn
	errc  chan error
	sem   chan struct{}
	done  chan struct{}
	once  sync.Once
}

// New starts sniffing the connections of l; cfg serves those that start
// with a TLS handshake.
func New(l net.Listener, cfg *tls.Config, o Options) *Listener {
	if o.FirstByte <= 0 {
		o.FirstByte = 10 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 256
	}
	s := &Listener{inner: l, cfg: cfg, o: o, out: make(chan net.Conn), errc: make(chan error, 1),
		sem: make(chan struct{}, o.MaxPending), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

func (s *Listener) acceptLoop() {
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.done:
			return
		}
		c, err := s.inner.Accept()
		if err != nil {
			<-s.sem
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case s.errc <- err:
			case <-s.done:
			}
			return
		}
		go s.sniff(c)
	}
}

func (s *Listener) sniff(c net.Conn) {
	defer func() { <-s.sem }()
	c.SetReadDeadline(time.Now().Add(s.o.FirstByte))
	br := bufio.NewReaderSize(c, 512)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var conn net.Conn = &peeked{Conn: c, r: br}
	if first[0] == recordHandshake {
		conn = tls.Server(conn, s.cfg)
	}
	select {
	case s.out <- conn:
	case <-s.done:
		c.Close()
	}
}

// Accept returns the next connection: a *tls.Conn (handshake not yet
// run; net/http runs it) or a plain one.
func (s *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-s.out:
		return c, nil
	case err := <-s.errc:
		return nil, err
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the raw listener.
func (s *Listener) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.inner.Close()
	})
	return err
}

// Addr is the raw listener's address.
func (s *Listener) Addr() net.Addr { return s.inner.Addr() }

// peeked replays the bytes read while sniffing.
type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

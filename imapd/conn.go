package imapd

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// preauthConn is a connection handed over by the front end. imapserver
// writes a "* PREAUTH" greeting first; the client already got its tagged
// OK, so the first line written is swallowed. Close tells ServeConn the
// session ended.
type preauthConn struct {
	net.Conn
	user string
	// publicOnly: a peer server's referral session (ServeReferral).
	publicOnly bool

	mu        sync.Mutex
	greeted   bool // the greeting line has been swallowed
	done      chan struct{}
	closeOnce sync.Once

	out corker
}

func (c *preauthConn) cork()         { c.out.cork() }
func (c *preauthConn) uncork() error { return c.out.uncork(c.Conn) }

func (c *preauthConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.greeted {
		c.mu.Unlock()
		return c.out.write(c.Conn, p)
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		c.mu.Unlock()
		return len(p), nil
	}
	c.greeted = true
	c.mu.Unlock()
	if rest := p[i+1:]; len(rest) > 0 {
		if _, err := c.Conn.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *preauthConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.done) })
	return err
}

// startSignal is closed at a listener's first Accept: from then on its
// Serve call is known to imapserver.Server.Close.
type startSignal struct {
	once sync.Once
	ch   chan struct{}
}

func newStartSignal() startSignal { return startSignal{ch: make(chan struct{})} }

func (s *startSignal) started() { s.once.Do(func() { close(s.ch) }) }

func (s *startSignal) wait(max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-s.ch:
	case <-t.C:
	}
}

// chanListener is a net.Listener fed by ServeConn.
type chanListener struct {
	startSignal
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{startSignal: newStartSignal(), conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) hand(c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.closed:
		return net.ErrClosed
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	l.started()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "imapd-handover" }

// loginListener marks its connections as needing LOGIN.
type loginListener struct {
	startSignal
	net.Listener
	check func(user, pass string) error
}

func (l *loginListener) Accept() (net.Conn, error) {
	l.started()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loginConn{Conn: c, check: l.check}, nil
}

type loginConn struct {
	net.Conn
	check func(user, pass string) error
	out   corker
}

func (c *loginConn) Write(p []byte) (int, error) { return c.out.write(c.Conn, p) }
func (c *loginConn) cork()                       { c.out.cork() }
func (c *loginConn) uncork() error               { return c.out.uncork(c.Conn) }

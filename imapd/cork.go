package imapd

import (
	"net"
	"sync"
)

// corkSize is how much output a corked connection holds before writing
// it out: large enough for several FETCH responses per write(2).
const corkSize = 64 << 10

// corker batches a session's output while one command runs. imapserver
// flushes its buffered writer after every response line (so each FETCH
// response would be its own write(2), and literals over its 4 KB buffer
// bypass it), which for a FETCH of many messages costs more than the
// responses themselves. Fetch corks the connection, and uncork writes what
// is held before the command's tagged reply (SPEC A9 untouched: nothing is
// held across commands, so IDLE updates go out at once).
type corker struct {
	mu     sync.Mutex
	corked bool
	buf    []byte
}

// write sends p to c, or holds it while corked.
func (k *corker) write(c net.Conn, p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.corked {
		return c.Write(p)
	}
	if len(k.buf)+len(p) > corkSize {
		if err := k.flushLocked(c); err != nil {
			return 0, err
		}
		if len(p) >= corkSize {
			return c.Write(p) // a large literal goes out as it is
		}
	}
	if k.buf == nil {
		k.buf = make([]byte, 0, corkSize)
	}
	k.buf = append(k.buf, p...)
	return len(p), nil
}

func (k *corker) flushLocked(c net.Conn) error {
	if len(k.buf) == 0 {
		return nil
	}
	_, err := c.Write(k.buf)
	k.buf = k.buf[:0]
	return err
}

func (k *corker) cork() {
	k.mu.Lock()
	k.corked = true
	k.mu.Unlock()
}

// uncork writes out what is held and stops holding output. The buffer is
// dropped so an idle session does not keep 64 KB.
func (k *corker) uncork(c net.Conn) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.corked = false
	err := k.flushLocked(c)
	k.buf = nil
	return err
}

// corkable is a connection whose output a command may batch.
type corkable interface {
	cork()
	uncork() error
}

// corkConn corks the session's connection if it can be corked, and
// returns the function that uncorks it.
func (s *session) corkConn() func() error {
	c, ok := s.conn.NetConn().(corkable)
	if !ok {
		return func() error { return nil }
	}
	c.cork()
	return c.uncork
}

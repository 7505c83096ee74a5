package imapfront

import (
	"bufio"
	"net"
)

// bufferedConn is a connection whose first bytes are already in a
// bufio.Reader: reads drain the reader (and then go on through it), writes
// go to the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handoverConn is the connection to give to the next owner: the connection
// itself when nothing is buffered (so a *tls.Conn stays one), else a
// wrapper that returns the buffered bytes first.
func handoverConn(c net.Conn, r *bufio.Reader) net.Conn {
	if r.Buffered() == 0 {
		return c
	}
	return &bufferedConn{Conn: c, r: r}
}

package pop3d

import (
	"io"
	"net"
	"time"
)

// relay pipes bytes between the client and the backend that holds the
// mailbox (SPEC A5) after the front end has answered the login itself.
// Client EOF half-closes the backend (so it sees the end of input, as a
// direct client would produce) and waits, bounded by the idle timeout, for
// the backend to finish; backend EOF or any error ends both sides.
func (ss *session) relay() {
	client, backend := ss.conn, ss.proxy
	defer backend.Close()
	_ = client.SetDeadline(time.Time{})
	_ = backend.SetDeadline(time.Time{})

	upDone := make(chan int64)
	go func() {
		// ss.r first drains anything the client pipelined after its login.
		n, err := io.Copy(backend, ss.r)
		if err != nil || closeWrite(backend) != nil {
			backend.Close()
		} else {
			_ = backend.SetReadDeadline(time.Now().Add(ss.srv.opts.IdleTimeout))
		}
		upDone <- n
	}()
	down, err := io.Copy(client, backend)
	if err != nil {
		ss.log.Debug("relay from backend ended", "err", err)
	}
	client.Close()
	backend.Close()
	up := <-upDone
	ss.log.Info("proxied session ended", "user", ss.user, "bytes_to_backend", up, "bytes_to_client", down)
}

// closeWrite half-closes c when it supports that (TCP, TLS).
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

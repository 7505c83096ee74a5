package gossip

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"pfrouter/servercred"
)

// Limits on streams that have not yet proven a server of the organization:
// memberlist reads a whole push/pull state (up to 20 MB) from a stream
// before its encryption check, so no byte reaches it until TLS has verified
// the peer's organization certificate, and the handshakes themselves are
// few and short.
const (
	// maxHandshakes bounds concurrent unauthenticated streams; more are
	// closed at once.
	maxHandshakes = 16
	// handshakeTimeout bounds how long an unauthenticated stream is kept.
	handshakeTimeout = 5 * time.Second
)

// tlsTransport is memberlist's TCP/UDP transport with every stream
// (push/pull state exchange, fallback probes) inside TLS 1.3 that verifies
// both sides as servers of the organization (servercred). Packets (UDP,
// at most one datagram each) stay on memberlist's own encryption keyed by
// the organization secret.
type tlsTransport struct {
	*memberlist.NetTransport
	id     *servercred.Identity
	peerAt func(addr string) (string, bool)

	streams chan net.Conn
	slots   chan struct{}
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*tlsTransport)(nil)

func newTLSTransport(nt *memberlist.NetTransport, id *servercred.Identity, peerAt func(string) (string, bool)) *tlsTransport {
	t := &tlsTransport{NetTransport: nt, id: id, peerAt: peerAt,
		streams: make(chan net.Conn), slots: make(chan struct{}, maxHandshakes), done: make(chan struct{})}
	t.wg.Add(1)
	go t.accept()
	return t
}

// accept takes raw streams from the TCP listener and hands memberlist only
// those whose TLS handshake proved a server of the organization.
func (t *tlsTransport) accept() {
	defer t.wg.Done()
	raw := t.NetTransport.StreamCh()
	for {
		var c net.Conn
		select {
		case c = <-raw:
		case <-t.done:
			return
		}
		select {
		case t.slots <- struct{}{}:
		default:
			c.Close() // too many unproven streams: refuse, do not queue
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			tc, err := t.serverHandshake(c)
			<-t.slots
			if err != nil {
				c.Close()
				return
			}
			select {
			case t.streams <- tc:
			case <-t.done:
				tc.Close()
			}
		}()
	}
}

func (t *tlsTransport) serverHandshake(c net.Conn) (net.Conn, error) {
	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	tc := tls.Server(c, t.id.ServerTLS())
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if _, ok := servercred.PeerServer(tc.ConnectionState()); !ok {
		return nil, errors.New("gossip stream from no server of the organization")
	}
	return tc, c.SetDeadline(time.Time{})
}

// StreamCh implements memberlist.Transport: only verified streams.
func (t *tlsTransport) StreamCh() <-chan net.Conn { return t.streams }

// DialTimeout implements memberlist.Transport.
func (t *tlsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: TLS that
// verifies the peer is the server memberlist names (or, when it names
// none, the server the directory places at addr).
func (t *tlsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	peer := a.Name
	if peer == "" {
		var ok bool
		if peer, ok = t.peerAt(a.Addr); !ok {
			return nil, fmt.Errorf("gossip: no server of the organization has gossip address %s", a.Addr)
		}
	}
	raw, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(timeout))
	tc := tls.Client(raw, t.id.ClientTLS(peer))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("gossip: TLS with server %s at %s: %w", peer, a.Addr, err)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// Shutdown implements memberlist.Transport.
func (t *tlsTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}

package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/directory"
	"pfrouter/referral"
)

// Referrer is what imapd needs to read a public folder that has no replica
// on this server (issue 13): which replica server to read from, and an IMAP
// connection to that server already logged in for the user over the
// authenticated server-to-server path. The node implements it over the
// directory, link state and the server trust API; tests use real servers.
type Referrer interface {
	// Decide chooses the replica a reader on this server reads f from,
	// passing over the servers in exclude (they failed for the session).
	Decide(f *directory.Folder, exclude []string) referral.Decision
	// Dial connects to server's IMAP service and logs in as user for a
	// public-folders-only session; the connection is positioned right
	// after the login's tagged OK. ctx bounds the exchange.
	Dial(ctx context.Context, server, user string) (net.Conn, error)
}

// Limits of the remote connection pool.
const (
	remoteIdlePerKey = 4                // idle connections kept per (server, user)
	remoteIdleMax    = 90 * time.Second // well under a server's idle logout
	remoteDialWait   = 15 * time.Second
	remoteOpWait     = 2 * time.Minute // one forwarded command, bodies included
	// remoteMaxPending bounds the unsolicited updates a replica server can
	// make a session hold before the client hears them; beyond it the
	// connection is dropped and the session fails over.
	remoteMaxPending = 100000
)

// remoteConn is an IMAP client connection to a replica server, logged in
// for one user. Unsolicited responses go to whichever session holds it.
type remoteConn struct {
	c      *imapclient.Client
	conn   net.Conn // under c, for deadlines
	gate   *gate    // the read side, shared with the FETCH relay
	tag    uint64   // the relay's last command tag
	server string
	user   string

	mu    sync.Mutex
	sink  *remoteSel // the selection receiving unsolicited data, or nil
	since time.Time  // when it went idle in the pool
}

func (rc *remoteConn) setSink(r *remoteSel) {
	rc.mu.Lock()
	rc.sink = r
	rc.mu.Unlock()
}

func (rc *remoteConn) deliver(ev remoteEvent) {
	rc.mu.Lock()
	r := rc.sink
	rc.mu.Unlock()
	if r != nil && !r.push(ev) {
		rc.c.Close() // flooded: the session's next command fails over
	}
}

// run bounds op by remoteOpWait: a replica server that stops answering
// without closing the connection fails the command (and the session fails
// over) instead of hanging it.
func (rc *remoteConn) run(op func(c *imapclient.Client) error) error {
	rc.conn.SetDeadline(time.Now().Add(remoteOpWait))
	defer rc.conn.SetDeadline(time.Time{})
	return op(rc.c)
}

// dead reports whether the connection is closed.
func (rc *remoteConn) dead() bool {
	select {
	case <-rc.c.Closed():
		return true
	default:
		return false
	}
}

// remotePool keeps logged-in connections to replica servers per (server,
// user), so that opening a referred folder again costs no TCP connect, TLS
// handshake or login; a session holds its connection for as long as the
// folder is selected, so commands never pay for one either.
type remotePool struct {
	ref Referrer
	mu  sync.Mutex
	// idle connections by server + "\x00" + user, oldest first.
	idle   map[string][]*remoteConn
	closed bool
}

func newRemotePool(ref Referrer) *remotePool {
	return &remotePool{ref: ref, idle: map[string][]*remoteConn{}}
}

// get returns a live connection to server for user: an idle one, or a new
// one.
func (p *remotePool) get(ctx context.Context, server, user string) (*remoteConn, error) {
	key := server + "\x00" + user
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, net.ErrClosed
	}
	for list := p.idle[key]; len(list) > 0; list = p.idle[key] {
		rc := list[len(list)-1]
		p.idle[key] = list[:len(list)-1]
		if rc.dead() || time.Since(rc.since) > remoteIdleMax {
			rc.c.Close()
			continue
		}
		p.mu.Unlock()
		return rc, nil
	}
	p.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, remoteDialWait)
	defer cancel()
	conn, err := p.ref.Dial(dctx, server, user)
	if err != nil {
		return nil, fmt.Errorf("imapd: referral to %s: %w", server, err)
	}
	g := newGate(conn)
	rc := &remoteConn{server: server, user: user, conn: g, gate: g}
	rc.c = imapclient.New(newPreauthed(g, conn), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(seq uint32) { rc.deliver(remoteEvent{kind: evExpunge, num: seq}) },
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					rc.deliver(remoteEvent{kind: evExists, num: *d.NumMessages})
				}
			},
			Fetch: func(msg *imapclient.FetchMessageData) {
				ev := remoteEvent{kind: evFlags, num: msg.SeqNum}
				hasFlags := false
				for item := msg.Next(); item != nil; item = msg.Next() {
					switch it := item.(type) {
					case imapclient.FetchItemDataUID:
						ev.uid = it.UID
					case imapclient.FetchItemDataFlags:
						ev.flags, hasFlags = it.Flags, true
					case imapclient.FetchItemDataBodySection:
						if it.Literal != nil {
							io.Copy(io.Discard, it.Literal)
						}
					case imapclient.FetchItemDataBinarySection:
						if it.Literal != nil {
							io.Copy(io.Discard, it.Literal)
						}
					}
				}
				if hasFlags {
					rc.deliver(ev)
				}
			},
		},
	})
	if err := rc.c.WaitGreeting(); err != nil {
		rc.c.Close()
		return nil, fmt.Errorf("imapd: referral to %s: %w", server, err)
	}
	return rc, nil
}

// put returns a connection that is in the authenticated state.
func (p *remotePool) put(rc *remoteConn) {
	rc.setSink(nil)
	if rc.dead() {
		return
	}
	key := rc.server + "\x00" + rc.user
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[key]) >= remoteIdlePerKey {
		rc.c.Close()
		return
	}
	rc.since = time.Now()
	p.idle[key] = append(p.idle[key], rc)
}

func (p *remotePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, list := range p.idle {
		for _, rc := range list {
			rc.c.Close()
		}
		delete(p.idle, k)
	}
}

// preauthed makes a connection that is already past its login look like a
// fresh PREAUTH session to imapclient, which expects a greeting first. The
// capabilities are those the server announced with its login OK (so
// imapclient needs no CAPABILITY round trip), else IMAP4rev1 only.
type preauthed struct {
	net.Conn
	rest []byte
}

func newPreauthed(conn, login net.Conn) *preauthed {
	caps := []string{"IMAP4rev1"}
	if c, ok := login.(interface{ Capabilities() []string }); ok && len(c.Capabilities()) > 0 {
		caps = c.Capabilities()
	}
	return &preauthed{Conn: conn, rest: []byte("* PREAUTH [CAPABILITY " + strings.Join(caps, " ") + "] referral session\r\n")}
}

func (c *preauthed) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// isRemoteIOError tells a broken connection (fail over) from the replica
// server's answer to the command (pass it on to the client).
func isRemoteIOError(err error) bool {
	if err == nil {
		return false
	}
	var ie *imap.Error
	return !errors.As(err, &ie)
}

// Package imapd is pfrouter's IMAP4 server (IMAP4rev1, and IMAP4rev2 as
// far as go-imap's imapserver allows) over the message store (package
// store): personal folders of local users, and the MAPI public folder tree
// under the shared namespace "Public Folders/" with per-user flags and
// folder permissions (SPEC A7–A9).
//
// It does not authenticate: the front end (package imapfront) handles the
// pre-auth state and hands authenticated connections to ServeConn.
// ServeLogin serves plain IMAP with LOGIN for tests and standalone use.
package imapd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/directory"
	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// Options configure a Server.
type Options struct {
	ServerName string
	Directory  *directory.Directory // users, folders, permissions, replicas, stores on this server
	Store      *store.Store
	Logger     *slog.Logger
	// MaxAppendSize bounds an APPEND (a public folder's own, smaller
	// limit wins). Default DefaultMaxAppendSize; the node passes the
	// organization's max_message_size so IMAP accepts what SMTP accepts.
	MaxAppendSize int64
	// SpoolDir holds APPEND literals larger than spoolThreshold while
	// they arrive. Default os.TempDir().
	SpoolDir string
	// Referrals, when set, makes public folders without a local replica
	// readable by referral to a replica server (issue 13); nil keeps them
	// \Noselect.
	Referrals Referrer
}

// DefaultMaxAppendSize is the SMTP default maximum message size.
const DefaultMaxAppendSize = 35 << 20

// Server serves IMAP sessions of this server's users.
type Server struct {
	name  string
	dir   *directory.Directory
	store *store.Store
	log   *slog.Logger

	maxAppend int64
	spoolDir  string
	referrals Referrer
	remotes   *remotePool

	imap   *imapserver.Server
	handed *chanListener // ServeConn's connections

	mu        sync.Mutex
	closed    bool
	listeners []*startSignal // one per Serve call, see Close
	closeOnce sync.Once
}

// New builds a server; it serves nothing until ServeConn or ServeLogin.
func New(opts Options) (*Server, error) {
	if opts.ServerName == "" || opts.Directory == nil || opts.Store == nil {
		return nil, errors.New("imapd: ServerName, Directory and Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		name:   opts.ServerName,
		dir:    opts.Directory,
		store:  opts.Store,
		log:    opts.Logger.With("component", "imapd", "server", opts.ServerName),
		handed: newChanListener(),

		maxAppend: opts.MaxAppendSize,
		spoolDir:  opts.SpoolDir,
	}
	if s.maxAppend <= 0 {
		s.maxAppend = DefaultMaxAppendSize
	}
	if s.spoolDir == "" {
		s.spoolDir = os.TempDir()
	}
	if opts.Referrals != nil {
		s.referrals, s.remotes = opts.Referrals, newRemotePool(opts.Referrals)
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
			imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
			imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {},
			imap.CapBinary: {}, imap.CapChildren: {}, imap.CapSpecialUse: {}, imap.CapCreateSpecialUse: {},
			imap.CapID: {}, imap.CapUnselect: {}, imap.CapLiteralPlus: {}, imap.CapMultiAppend: {},
			imap.CapCondStore: {}, imap.CapQResync: {}, imapserver.CapContextSearch: {},
			imap.CapSort: {}, imap.CapSortDisplay: {}, imap.CapESort: {},
			imapserver.CapThreadReferences: {}, imapserver.CapThreadOrderedSubject: {},
		},
		Logger: printfLogger{s.log},
		// Plain LOGIN is only reachable through ServeLogin, whose caller
		// chose to serve without TLS; handed-over sessions are already
		// authenticated.
		InsecureAuth: true,
	})
	s.listeners = append(s.listeners, &s.handed.startSignal)
	go func() {
		if err := s.imap.Serve(s.handed); err != nil {
			s.log.Error("imap server stopped", "err", err)
		}
	}()
	return s, nil
}

// ServeConn serves an IMAP session that the front end already
// authenticated as user. The client has seen the tagged OK of its LOGIN, so
// no greeting reaches it. It returns when the session ends.
func (s *Server) ServeConn(conn net.Conn, user string) error {
	if _, err := s.checkUser(user); err != nil {
		return err
	}
	pc := &preauthConn{Conn: conn, user: user, done: make(chan struct{})}
	if err := s.handed.hand(pc); err != nil {
		return err
	}
	<-pc.done
	return nil
}

// ServeReferral serves a peer server's referral session for user (issue
// 13): the front end verified the peer and the user; only the "Public
// Folders/" namespace exists, whatever server holds the user's mailbox,
// and the user's rights apply as in any session. It returns when the
// session ends.
func (s *Server) ServeReferral(conn net.Conn, user string) error {
	pc := &preauthConn{Conn: conn, user: user, publicOnly: true, done: make(chan struct{})}
	if err := s.handed.hand(pc); err != nil {
		return err
	}
	<-pc.done
	return nil
}

// ServeLogin serves plain IMAP on l: clients log in with LOGIN (or
// AUTHENTICATE PLAIN), checked by check. It returns when l is closed.
func (s *Server) ServeLogin(l net.Listener, check func(user, pass string) error) error {
	ll := &loginListener{startSignal: newStartSignal(), Listener: l, check: check}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, &ll.startSignal)
	s.mu.Unlock()
	return s.imap.Serve(ll)
}

// Close ends every session and listener.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		ls := s.listeners
		s.mu.Unlock()
		// imapserver's Serve counts itself in a WaitGroup only once it
		// runs, and Close waits on that group: closing before every Serve
		// reached Accept would race. Accept comes right after, so wait for it.
		for _, l := range ls {
			l.wait(2 * time.Second)
		}
		err = s.imap.Close()
		if s.remotes != nil {
			s.remotes.close()
		}
	})
	return err
}

// Capabilities lists what a logged-in client of this server may use; the
// front end (imapfront) announces it in the OK of a login it hands over.
func (s *Server) Capabilities() []string {
	caps := s.imap.AuthenticatedCaps()
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = string(c)
	}
	return out
}

// checkUser verifies that a user exists and has a mailbox on this server,
// returning the mailbox store.
func (s *Server) checkUser(user string) (string, error) {
	snap := s.dir.Snapshot()
	u := snap.User(user)
	if u == nil {
		return "", fmt.Errorf("imapd: unknown user %q", user)
	}
	st := snap.Store(u.MailboxStore)
	if st == nil || st.Server != s.name {
		return "", fmt.Errorf("imapd: mailbox of %s is in store %s, not on server %s", user, u.MailboxStore, s.name)
	}
	return u.MailboxStore, nil
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	sess := &session{srv: s, conn: c}
	switch nc := c.NetConn().(type) {
	case *preauthConn:
		if err := sess.startAs(nc.user, nc.publicOnly); err != nil {
			return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Mailbox unavailable"}
		}
		return sess, &imapserver.GreetingData{PreAuth: true}, nil
	case *loginConn:
		sess.check = nc.check
		return sess, nil, nil
	default:
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Not accepting connections here"}
	}
}

type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) { p.l.Warn(fmt.Sprintf(format, args...)) }

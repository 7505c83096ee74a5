package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"pfrouter/auth"
	"pfrouter/imapd"
	"pfrouter/imapfront"
	"pfrouter/pop3d"
	"pfrouter/servercred"
	"pfrouter/store"
)

// startAccess brings up the POP3/IMAP4 access tier (SPEC A1–A9): every
// server is a front end that authenticates with the auth policy, then
// serves a local mailbox or proxies to the server that holds it.
func (n *Node) startAccess(ls Listeners, tlsCfg *tls.Config) error {
	// Peers use self-signed certificates by default; see imapfront.Options.DialTLS.
	// Resumed sessions keep a full handshake off most proxied logins.
	peerTLS := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	if ls["imap"] != nil || ls["imaps"] != nil {
		var err error
		if n.IMAP, err = imapd.New(imapd.Options{ServerName: n.Name, Directory: n.Directory, Store: n.Store, Logger: n.Log}); err != nil {
			return err
		}
		front := imapfront.New(imapfront.Options{ServerName: n.Name, Policy: meteredPolicy{n.Auth, n.Telemetry.Metrics()}, Local: n.IMAP, TLSConfig: tlsCfg,
			Secret: n.Secret, Logger: n.Log, DialTLS: peerTLS})
		if l := ls["imap"]; l != nil {
			n.serve("imap", func() error { return front.Serve(l) })
		}
		if l := ls["imaps"]; l != nil {
			n.serve("imaps", func() error { return front.ServeTLS(l) })
		}
		n.closers = append(n.closers, func(context.Context) error { front.Close(); return n.IMAP.Close() })
	}
	if ls["pop3"] != nil || ls["pop3s"] != nil {
		pa := &pop3Auth{n: n, peerTLS: peerTLS, locks: map[string]bool{}}
		mk := func(cfg *tls.Config) (*pop3d.Server, error) {
			return pop3d.New(pop3d.Options{Hostname: n.Name, TLSConfig: cfg, Auth: pa, Logger: n.Log, PlaintextAllowed: n.Auth.PlainAllowed})
		}
		if l := ls["pop3"]; l != nil {
			s, err := mk(tlsCfg)
			if err != nil {
				return err
			}
			n.serve("pop3", func() error { return ignoreClosed(s.Serve(l)) })
			n.closers = append(n.closers, func(context.Context) error { return s.Close() })
		}
		if l := ls["pop3s"]; l != nil {
			s, err := mk(nil)
			if err != nil {
				return err
			}
			tl := tls.NewListener(l, tlsCfg)
			n.serve("pop3s", func() error { return ignoreClosed(s.Serve(tl)) })
			n.closers = append(n.closers, func(context.Context) error { return s.Close() })
		}
	}
	return nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, pop3d.ErrServerClosed) {
		return nil
	}
	return err
}

// pop3Auth is pop3d's Authenticator: the auth policy decides; a local
// mailbox opens the Inbox, a remote one is proxied (A5).
type pop3Auth struct {
	n       *Node
	peerTLS *tls.Config
	mu      sync.Mutex
	locks   map[string]bool // one POP3 session per maildrop (RFC 1939 exclusive access)
}

func (a *pop3Auth) Authenticate(ctx context.Context, req pop3d.AuthRequest) (pop3d.Result, error) {
	mech := auth.MechUser
	if req.Mechanism == "PLAIN" {
		mech = auth.MechPlain
	}
	d, err := meteredPolicy{a.n.Auth, a.n.Telemetry.Metrics()}.Authenticate(ctx, auth.Request{Protocol: auth.POP3, Mechanism: mech, AuthzID: req.AuthzID,
		Username: req.Username, Password: req.Password, TLS: req.TLS, Remote: req.Remote})
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return pop3d.Result{}, &pop3d.AuthError{Code: ae.POP3Code(), Msg: ae.Msg}
		}
		return pop3d.Result{}, &pop3d.AuthError{Code: "SYS/TEMP", Msg: "authentication unavailable, try again later"}
	}
	if !d.Local {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		conn, err := pop3d.DialAuthenticated(dctx, d.ProxyTo, a.peerTLS, d.User.Name, servercred.Username(a.n.Name), servercred.Password(a.n.Secret, a.n.Name))
		if err != nil {
			a.n.Log.Warn("pop3 proxy to mailbox server failed", "user", d.User.Name, "server", d.Server, "err", err)
			return pop3d.Result{}, &pop3d.AuthError{Code: "SYS/TEMP", Msg: "mailbox server " + d.Server + " unavailable, try again later"}
		}
		return pop3d.Result{User: d.User.Name, Proxy: conn}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locks[d.User.Name] {
		return pop3d.Result{}, &pop3d.AuthError{Code: "IN-USE", Msg: "maildrop already locked by another session"}
	}
	a.locks[d.User.Name] = true
	ref := store.MailboxRef{Store: d.User.MailboxStore, User: d.User.Name, Name: "INBOX"}
	return pop3d.Result{User: d.User.Name, Maildrop: &maildrop{a: a, user: d.User.Name, st: a.n.Store, ref: ref}}, nil
}

// maildrop is a user's Inbox for POP3 (A6).
type maildrop struct {
	a    *pop3Auth
	user string
	st   *store.Store
	ref  store.MailboxRef
	once sync.Once
}

func (m *maildrop) Messages(ctx context.Context) ([]pop3d.MessageInfo, error) {
	msgs, err := m.st.Messages(ctx, m.ref)
	if err != nil && !errors.Is(err, store.ErrNoMailbox) {
		return nil, err
	}
	out := make([]pop3d.MessageInfo, len(msgs))
	for i, mi := range msgs {
		out[i] = pop3d.MessageInfo{UID: strconv.FormatUint(uint64(mi.UID), 10), Size: mi.Size}
	}
	return out, nil
}

func (m *maildrop) Open(ctx context.Context, uid string) (io.ReadCloser, error) {
	u, err := strconv.ParseUint(uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bad uid %q", uid)
	}
	b, err := m.st.Body(ctx, m.ref, uint32(u))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *maildrop) Delete(ctx context.Context, uids []string) error {
	us := make([]uint32, 0, len(uids))
	for _, s := range uids {
		u, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("bad uid %q", s)
		}
		us = append(us, uint32(u))
	}
	_, err := m.st.Expunge(ctx, m.ref, us)
	return err
}

func (m *maildrop) Close() error {
	m.once.Do(func() {
		m.a.mu.Lock()
		delete(m.a.locks, m.user)
		m.a.mu.Unlock()
	})
	return nil
}

package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"pfrouter/auth"
	"pfrouter/store"
)

// Policy decides logins; *auth.Policy satisfies it.
type Policy interface {
	Authenticate(ctx context.Context, r auth.Request) (auth.Decision, error)
}

// FrontOptions configure a Front.
type FrontOptions struct {
	// Server is this server's name.
	Server string
	Policy Policy
	// Store holds the mailboxes of this server.
	Store *store.Store
	// PeerTLS gives the client TLS configuration for STLS to mailbox server
	// `server` (servercred.Identity.ClientTLS). A proxied login is AUTH
	// EXTERNAL on it: the organization certificate is the credential (A5).
	PeerTLS func(server string) *tls.Config
	Logger  *slog.Logger
}

// Front is the Authenticator of a pfrouter server: the auth policy decides
// (A2–A4); a mailbox on this server opens its Inbox from the store, one
// session at a time (RFC 1939 exclusive access, A6); a mailbox elsewhere is
// proxied to the server that holds it (A5).
type Front struct {
	o     FrontOptions
	mu    sync.Mutex
	locks map[string]bool // user -> maildrop held by a session
}

// NewFront returns the server's POP3 Authenticator.
func NewFront(o FrontOptions) *Front {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Front{o: o, locks: map[string]bool{}}
}

// Authenticate implements Authenticator.
func (f *Front) Authenticate(ctx context.Context, req AuthRequest) (Result, error) {
	mech := auth.MechUser
	switch req.Mechanism {
	case "PLAIN":
		mech = auth.MechPlain
	case "EXTERNAL":
		mech = auth.MechExternal
	}
	d, err := f.o.Policy.Authenticate(ctx, auth.Request{Protocol: auth.POP3, Mechanism: mech, AuthzID: req.AuthzID,
		Username: req.Username, Password: req.Password, TLS: req.TLS, TLSState: req.TLSState, Remote: req.Remote, Client: req.Client})
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return Result{}, &AuthError{Code: ae.POP3Code(), Msg: ae.Msg}
		}
		return Result{}, &AuthError{Code: "SYS/TEMP", Msg: "authentication unavailable, try again later"}
	}
	if !d.Local {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var peerTLS *tls.Config
		if f.o.PeerTLS != nil {
			peerTLS = f.o.PeerTLS(d.Server)
		}
		dctx = context.WithValue(dctx, clientKey{}, req.Remote)
		conn, err := DialAuthenticated(dctx, d.ProxyTo, peerTLS, d.User.Name)
		if err != nil {
			f.o.Logger.Warn("pop3 proxy to mailbox server failed", "user", d.User.Name, "server", d.Server, "err", err)
			return Result{}, &AuthError{Code: "SYS/TEMP", Msg: "mailbox server " + d.Server + " unavailable, try again later"}
		}
		return Result{User: d.User.Name, Proxy: conn}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.locks[d.User.Name] {
		return Result{}, &AuthError{Code: "IN-USE", Msg: "maildrop already locked by another session"}
	}
	f.locks[d.User.Name] = true
	ref := store.MailboxRef{Store: d.User.MailboxStore, User: d.User.Name, Name: "INBOX"}
	return Result{User: d.User.Name, Maildrop: &storeMaildrop{f: f, user: d.User.Name, st: f.o.Store, ref: ref}}, nil
}

// storeMaildrop is a user's Inbox in the message store (A6).
type storeMaildrop struct {
	f    *Front
	user string
	st   *store.Store
	ref  store.MailboxRef
	once sync.Once
}

func (m *storeMaildrop) Messages(ctx context.Context) ([]MessageInfo, error) {
	msgs, err := m.st.Messages(ctx, m.ref)
	if err != nil && !errors.Is(err, store.ErrNoMailbox) {
		return nil, err
	}
	out := make([]MessageInfo, len(msgs))
	for i, mi := range msgs {
		out[i] = MessageInfo{UID: strconv.FormatUint(uint64(mi.UID), 10), Size: mi.Size}
	}
	return out, nil
}

func (m *storeMaildrop) Open(ctx context.Context, uid string) (io.ReadCloser, error) {
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

func (m *storeMaildrop) Delete(ctx context.Context, uids []string) error {
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

func (m *storeMaildrop) Close() error {
	m.once.Do(func() {
		m.f.mu.Lock()
		delete(m.f.locks, m.user)
		m.f.mu.Unlock()
	})
	return nil
}

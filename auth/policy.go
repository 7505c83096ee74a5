// Package auth decides POP3/IMAP4 logins for pfrouter's access tier (SPEC
// A2–A5): which mechanisms the login type allows with and without TLS,
// whether the password is right (bcrypt or, in demo configs, a plain
// password), whether the account may use the protocol (per-user flags,
// guest/anonymous/admin refusal), where its mailbox lives and whether a
// cross-site session may be proxied. It also admits peer servers logging in
// on a user's behalf with SASL EXTERNAL over TLS with an organization client
// certificate (servercred) and limits failures per client, servers' included.
//
// Neighbours: imapfront and pop3d call Authenticate (or SCRAM) and turn a
// Decision into a local session or a proxied one; directory supplies users
// and servers, read afresh at each login so flag changes apply at the next
// login; servercred proves peer servers.
package auth

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
)

// Protocol names the access protocol of a login.
type Protocol string

const (
	IMAP Protocol = "imap"
	POP3 Protocol = "pop3"
	SMTP Protocol = "smtp"
)

// Options configures a Policy. Directory and ServerName are required.
type Options struct {
	Directory  *directory.Directory
	ServerName string // this server
	LoginType  string // config.LoginPlainText | LoginPlainTextAuth | LoginSecure; "" = SecureLogin
	CrossSite  string // config.CrossSiteProxy | CrossSiteRefuse; "" = proxy
	Logger     *slog.Logger
	Now        func() time.Time

	// MaxFailures failed logins from one client IP within FailureWindow
	// lock it out for Lockout. Defaults 10, 5m, 5m; MaxFailures < 0
	// disables the limit.
	MaxFailures   int
	FailureWindow time.Duration
	Lockout       time.Duration
	// FailureDelay is how long a failed login waits, per recent failure of
	// that client, before it is answered. Default 500ms; < 0 disables.
	FailureDelay time.Duration
	// SCRAMIterations is the PBKDF2 count of derived SCRAM credentials.
	// Default 4096 (RFC 7677's minimum).
	SCRAMIterations int
}

// Request is one login attempt with a password mechanism, or a peer
// server's SASL EXTERNAL.
type Request struct {
	Protocol Protocol
	// Mechanism is "LOGIN"/"USER" (plain credentials), "PLAIN" (SASL
	// PLAIN) or "EXTERNAL" (a peer server proven by its TLS client
	// certificate, acting for AuthzID).
	Mechanism string
	// AuthzID is the SASL authorization identity ("" for none); Username
	// is a user name or one of its addresses.
	AuthzID, Username, Password string
	TLS                         bool
	// TLSState is the connection's TLS state, for EXTERNAL; nil without TLS.
	TLSState *tls.ConnectionState
	Remote   net.Addr
	// Client is, for a server login (a front end proxying a session it
	// accepted), the address of that session's client as the front end
	// reports it. The failed-login lockout of a proxied login applies to
	// it; it is ignored unless the peer server is proven.
	Client net.Addr
}

// Decision is an accepted login.
type Decision struct {
	User   *directory.User // the authenticated mailbox owner
	Local  bool            // mailbox on this server: serve it here
	Server string          // mailbox server name
	// ProxyTo is the mailbox server's plain listener for the protocol
	// (listen.imap, listen.pop3, listen.smtp) when Local is false.
	ProxyTo string
	// ViaServer is the peer server that authenticated on the user's behalf
	// (it is proxying a session it accepted); "" for a direct login.
	ViaServer string
	Mechanism string
	// PublicOnly marks a peer server's public folder referral session
	// (ReferralAuthzID): served here (Local), public folders only.
	PublicOnly bool
}

// Policy decides logins. It is safe for concurrent use.
type Policy struct {
	dir    atomic.Pointer[directory.Directory]
	acc    atomic.Pointer[config.Access]
	server string
	log    *slog.Logger
	now    func() time.Time
	lim    *limiter
	delay  time.Duration
	scram  *scramStore
	pw     *passwords
	wait   func(ctx context.Context, d time.Duration) // the failure delay; tests record it
}

// New builds a Policy and derives the SCRAM credentials of users with a
// plain password.
func New(opts Options) *Policy {
	p := &Policy{server: opts.ServerName, log: opts.Logger, now: opts.Now}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	maxF, window, lockout := opts.MaxFailures, opts.FailureWindow, opts.Lockout
	if maxF == 0 {
		maxF = 10
	}
	if window <= 0 {
		window = 5 * time.Minute
	}
	if lockout <= 0 {
		lockout = 5 * time.Minute
	}
	p.lim = newLimiter(maxF, window, lockout, p.now)
	switch {
	case opts.FailureDelay == 0:
		p.delay = 500 * time.Millisecond
	case opts.FailureDelay > 0:
		p.delay = opts.FailureDelay
	}
	p.scram = newSCRAMStore(opts.SCRAMIterations)
	p.pw = newPasswords()
	p.wait = sleepCtx
	p.SetAccess(config.Access{LoginType: opts.LoginType, CrossSite: opts.CrossSite})
	if opts.Directory != nil {
		p.SetDirectory(opts.Directory)
	}
	return p
}

// SetDirectory swaps the directory (a reloaded organization); the next login
// reads the new one (A4: flag changes apply at the next login).
func (p *Policy) SetDirectory(d *directory.Directory) {
	p.dir.Store(d)
	p.scram.preload(d.Snapshot())
	p.pw.learn(d.Snapshot())
}

// SetAccess changes the login type and cross-site policy at runtime.
func (p *Policy) SetAccess(a config.Access) {
	if a.LoginType == "" {
		a.LoginType = config.LoginSecure
	}
	if a.CrossSite == "" {
		a.CrossSite = config.CrossSiteProxy
	}
	p.acc.Store(&a)
}

func (p *Policy) access() config.Access { return *p.acc.Load() }

// ServerName is the server this policy decides for.
func (p *Policy) ServerName() string { return p.server }

func (p *Policy) snapshot() *directory.Snapshot {
	d := p.dir.Load()
	if d == nil {
		return nil
	}
	return d.Snapshot()
}

// lookupUser finds a user by name, then by address.
func lookupUser(snap *directory.Snapshot, name string) *directory.User {
	if name == "" {
		return nil
	}
	if u := snap.User(name); u != nil {
		return u
	}
	if strings.Contains(name, "@") {
		if e, err := snap.Resolve(name); err == nil && e.User != nil {
			return e.User
		}
		return nil
	}
	return snap.User(strings.ToLower(name))
}

// Authenticate decides a login with a password mechanism. A refusal is an
// *Error; every refusal is logged.
func (p *Policy) Authenticate(ctx context.Context, r Request) (Decision, error) {
	// A server login is locked out by its client's address once the
	// credential is verified (serverLogin), not by the front end's.
	lockBy := r.Remote
	if strings.EqualFold(r.Mechanism, MechExternal) {
		lockBy = nil // serverLogin checks the lock of whoever it proves
	}
	if err := p.precheck(ctx, r.Protocol, r.Mechanism, r.TLS, lockBy, r.Username); err != nil {
		return Decision{}, err
	}
	if strings.EqualFold(r.Mechanism, MechExternal) {
		return p.serverLogin(ctx, r)
	}
	if !plainMechanism(r.Mechanism) {
		return Decision{}, p.refused(r, refuse(AuthFailed, "mechanism %s needs a SASL conversation", r.Mechanism), "not a password mechanism")
	}
	if isServerLogin(r.Username) {
		// Servers prove themselves with certificates; a "server:" password
		// is at best a replayed credential of the old scheme.
		return Decision{}, p.failed(ctx, r, "server logins use TLS client certificates, not passwords")
	}
	snap := p.snapshot()
	if snap == nil {
		return Decision{}, p.refused(r, refuse(TempFail, "directory not available"), "no directory")
	}
	u := lookupUser(snap, r.Username)
	if !p.pw.check(u, r.Password) {
		reason := "wrong password"
		if u == nil {
			reason = "unknown user"
		}
		return Decision{}, p.failed(ctx, r, reason)
	}
	if r.AuthzID != "" {
		// A user may act only as itself; acting for others is for servers.
		if az := lookupUser(snap, r.AuthzID); az == nil || az.Name != u.Name {
			return Decision{}, p.failed(ctx, r, "authorization identity "+r.AuthzID+" is not the user")
		}
	}
	p.scram.learn(u, r.Password)
	return p.admit(r, snap, u, "")
}

// precheck applies what needs no credentials: the rate limit and the login
// type (A2).
func (p *Policy) precheck(ctx context.Context, proto Protocol, mech string, tls bool, remote net.Addr, user string) error {
	r := Request{Protocol: proto, Mechanism: mech, TLS: tls, Remote: remote, Username: user}
	if err := p.checkLock(ctx, r, remote); err != nil {
		return err
	}
	if !knownMechanism(mech) {
		return p.refused(r, refuse(AuthFailed, "unsupported mechanism %q", mech), "unsupported mechanism")
	}
	if !p.Allowed(mech, tls) {
		msg := "TLS is required to log in; use STARTTLS or the TLS port"
		if p.access().LoginType == config.LoginPlainTextAuth {
			msg = "plain-text passwords need TLS; use STARTTLS or SCRAM-SHA-256"
		}
		return p.refused(r, refuse(PrivacyRequired, "%s", msg), "login type forbids this mechanism", "login_type", p.access().LoginType)
	}
	return nil
}

// checkLock refuses a login from a locked-out client address (nil: not
// limited).
func (p *Policy) checkLock(ctx context.Context, r Request, client net.Addr) error {
	if locked, until := p.lim.locked(clientKey(client)); locked {
		p.sleep(ctx, p.delay)
		return p.refused(r, refuse(RateLimited, "too many failed logins from your address; try again later"),
			"client locked out", "until", until, "client", addrString(client))
	}
	return nil
}

// failed counts a credential failure for the client, slows the answer and
// logs it.
func (p *Policy) failed(ctx context.Context, r Request, reason string) error {
	n := p.lim.fail(clientKey(r.Remote))
	if n > 0 && p.delay > 0 {
		p.sleep(ctx, min(p.delay*time.Duration(n), 10*p.delay))
	}
	return p.refused(r, refuse(AuthFailed, "invalid credentials"), reason, "recent_failures", n)
}

func (p *Policy) sleep(ctx context.Context, d time.Duration) {
	if d > 0 {
		p.wait(ctx, d)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// refused logs a refusal and returns it.
func (p *Policy) refused(r Request, e *Error, reason string, attrs ...any) error {
	args := append([]any{"protocol", string(r.Protocol), "user", r.Username, "mechanism", r.Mechanism,
		"tls", r.TLS, "remote", addrString(r.Remote), "frontend", p.server, "kind", e.Kind.String(), "reason", reason}, attrs...)
	p.log.Warn("login refused", args...)
	return e
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

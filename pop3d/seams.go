package pop3d

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"time"
)

// Options configures a Server. Auth is required; everything else has a
// default.
type Options struct {
	// Hostname appears in the greeting. Default: os.Hostname().
	Hostname string
	// TLSConfig enables STLS on plain connections. nil: no STLS. Implicit
	// TLS (pop3s, port 995) is Serve on a tls.Listener; it does not need
	// this field.
	TLSConfig *tls.Config
	// Auth decides every login.
	Auth Authenticator
	// Logger receives session logs. Default: slog.Default().
	Logger *slog.Logger
	// IdleTimeout closes a session that sends no command for this long,
	// without entering the UPDATE state. Default 10 minutes (RFC 1939 §3).
	IdleTimeout time.Duration
	// MaxBadCommands disconnects a client after this many unknown, malformed,
	// out-of-state or overlong commands and failed logins. Default 10.
	MaxBadCommands int
	// PlaintextAllowed reports whether plain credentials (USER/PASS and
	// SASL PLAIN) may be used on a connection whose TLS state is tlsActive
	// (SPEC A2). When it returns false, CAPA does not advertise USER or
	// SASL PLAIN and those commands are refused before any password is
	// sent to the Authenticator. nil: always allowed (the Authenticator
	// still sees AuthRequest.TLS and may refuse).
	PlaintextAllowed func(tlsActive bool) bool
	// MaxConnsPerIP caps open sessions from one client IP; the one over
	// it is answered "-ERR [SYS/TEMP]" and closed. 0: connlimit's default;
	// < 0: no limit.
	MaxConnsPerIP int
	// MaxConnsPerUser caps a user's logged-in sessions on this server,
	// local and proxied alike, counted after the login succeeds (never
	// before: strangers cannot use up a user's slots). The login over it
	// is answered "-ERR [IN-USE]" (RFC 2449 8.1.2) and the session stays
	// in the AUTHORIZATION state. A local maildrop is also locked to one
	// session (the Authenticator's IN-USE); the cap bounds what the lock
	// does not see, such as sessions relayed to another server.
	// 0: connlimit's default; < 0: no limit.
	MaxConnsPerUser int
}

// AuthRequest is one login attempt.
type AuthRequest struct {
	// Mechanism is "USER" (USER/PASS), "PLAIN" (AUTH PLAIN) or "EXTERNAL"
	// (AUTH EXTERNAL: a peer server proven by its TLS client certificate,
	// acting for AuthzID; only offered under TLS).
	Mechanism string
	// AuthzID comes from SASL PLAIN or EXTERNAL; it is "" for USER/PASS and
	// when the client sent none.
	AuthzID, Username, Password string
	TLS                         bool // is the connection TLS-protected now
	// TLSState is the connection's TLS state when TLS is on.
	TLSState *tls.ConnectionState
	Remote   net.Addr
	// Client is the client address a proxying front end reported with
	// XCLIENT; auth applies the failed-login lockout of a verified server
	// login to it instead of the front end's address.
	Client net.Addr
}

// Authenticator decides logins.
type Authenticator interface {
	// Authenticate decides a login. On success it returns either a local
	// Maildrop, or a Proxy: an already-authenticated connection to the POP3
	// server holding the mailbox (see DialAuthenticated). The front end then
	// answers the client "+OK" itself and relays bytes both ways until
	// either side closes. An *AuthError carries the response code and text;
	// any other error is answered "-ERR [SYS/TEMP]".
	Authenticate(ctx context.Context, req AuthRequest) (Result, error)
}

// Result is a successful login: exactly one of Maildrop and Proxy is set.
type Result struct {
	User     string
	Maildrop Maildrop
	Proxy    net.Conn
}

// AuthError is a refused login. Code is an RFC 2449/3206 response code such
// as "AUTH", "SYS/TEMP", "SYS/PERM" or "IN-USE" ("" for none); Msg is the
// human-readable text after it.
type AuthError struct {
	Code string
	Msg  string
}

func (e *AuthError) Error() string {
	if e.Code == "" {
		return "pop3d: login refused: " + e.Msg
	}
	return "pop3d: login refused: [" + e.Code + "] " + e.Msg
}

// MessageInfo describes one message of the maildrop snapshot.
type MessageInfo struct {
	// UID is the persistent unique id UIDL reports: 1 to 70 characters in
	// the range 0x21–0x7E (RFC 1939 §7), stable across sessions.
	UID string
	// Size is the octet count LIST and STAT report: the message as
	// transmitted after CRLF normalisation and before byte-stuffing (the
	// usual convention; RFC 1939 only calls it "exact size"). A store
	// holding messages with bare LF line ends gets this from
	// TransmittedSize.
	Size int64
}

// Maildrop is one user's Inbox for the length of a POP3 session. The
// Authenticator has already locked it (refusing with Code "IN-USE" when
// another session holds it).
type Maildrop interface {
	// Messages lists the Inbox at login (a snapshot; POP3 numbering is
	// fixed for the session). It is called once, right after login.
	Messages(ctx context.Context) ([]MessageInfo, error)
	// Open returns the full RFC 5322 message with this UID.
	Open(ctx context.Context, uid string) (io.ReadCloser, error)
	// Delete removes the given messages. It is called only in the UPDATE
	// state after QUIT, at most once per session and never with an empty
	// list; a dropped connection deletes nothing.
	Delete(ctx context.Context, uids []string) error
	// Close releases the lock. It is called at the end of every session
	// that obtained the Maildrop, whatever the outcome.
	Close() error
}

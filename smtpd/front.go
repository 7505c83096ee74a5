package smtpd

import (
	"context"
	"crypto/tls"
	"net"

	"pfrouter/auth"
	"pfrouter/directory"
	"pfrouter/routing"
	"pfrouter/servercred"
)

// DirectoryChecker is the Checker of a pfrouter server: the routing
// package's RCPT-time checks (S1, R11, R15, R17, and for outside addresses
// the relay rule: authenticated users only, through an outbound connector)
// on the directory as it is now. Refused, when set, is told each refusal's
// code (for metrics).
type DirectoryChecker struct {
	Directory *directory.Directory
	Refused   func(code string)
}

// CheckRecipient implements Checker.
func (c DirectoryChecker) CheckRecipient(rcpt, sender, senderUser string, size int64) *routing.Check {
	chk := routing.CheckSubmission(c.Directory.Snapshot(), routing.Input{Recipient: rcpt, Sender: sender, SenderUser: senderUser, Size: size})
	if chk != nil && c.Refused != nil {
		c.Refused(chk.Code)
	}
	return chk
}

// CheckSender implements Checker: an authenticated user's MAIL FROM must
// be one of the user's own addresses.
func (c DirectoryChecker) CheckSender(user, sender string) *routing.Check {
	return routing.CheckSender(c.Directory.Snapshot(), user, sender)
}

// UserAuthenticator decides logins; *auth.Policy satisfies it.
type UserAuthenticator interface {
	Authenticate(ctx context.Context, r auth.Request) (auth.Decision, error)
}

// OrgAuthenticator is the Authenticator and ServerVerifier of a pfrouter
// server: a server of the organization proves itself with its TLS client
// certificate from the organization CA and must be in the directory (S5); a
// user is checked by the same policy as IMAP4 and POP3 (passwords, login
// type, rate limits). No password makes a session a server's.
type OrgAuthenticator struct {
	Directory *directory.Directory
	Users     UserAuthenticator
}

// PeerServer implements ServerVerifier.
func (a OrgAuthenticator) PeerServer(cs tls.ConnectionState) (string, bool) {
	srv, ok := servercred.PeerServer(cs)
	if !ok || a.Directory.Snapshot().Server(srv) == nil {
		return "", false
	}
	return srv, true
}

// Authenticate implements Authenticator. "server:" names go to the user
// policy too, which refuses them and counts the failure: servers never log
// in with a password.
func (a OrgAuthenticator) Authenticate(ctx context.Context, username, password string, remote net.Addr, tlsOn bool) (Principal, error) {
	d, err := a.Users.Authenticate(ctx, auth.Request{Protocol: auth.SMTP, Mechanism: auth.MechPlain,
		Username: username, Password: password, TLS: tlsOn, Remote: remote})
	if err != nil {
		return Principal{}, err
	}
	return Principal{User: d.User.Name}, nil
}

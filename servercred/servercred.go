// Package servercred is how pfrouter servers prove to each other that they
// belong to the organization (SPEC S5, R13b, A5): a server logs in to a peer
// (SMTP relay, IMAP/POP3 proxying) as "server:<name>" with a password that is
// an HMAC of its name under the organization's shared secret. Peers verify it
// with the same secret. A client without the secret cannot compute it, so
// routing metadata and proxied logins are trusted only from servers.
package servercred

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prefix marks a server principal's user name.
const Prefix = "server:"

// Username is the login name of a server.
func Username(server string) string { return Prefix + server }

// Password is a server's password under the organization secret.
func Password(secret, server string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pfrouter-server-v1\x00" + server))
	return hex.EncodeToString(m.Sum(nil))
}

// IsServerName reports whether a login name is a server principal's.
func IsServerName(username string) bool { return strings.HasPrefix(username, Prefix) }

// Verify checks a server login in constant time and returns the server name.
func Verify(secret, username, password string) (server string, ok bool) {
	if secret == "" || !IsServerName(username) {
		return "", false
	}
	server = strings.TrimPrefix(username, Prefix)
	if server == "" {
		return "", false
	}
	want := Password(secret, server)
	if !hmac.Equal([]byte(want), []byte(password)) {
		return "", false
	}
	return server, true
}

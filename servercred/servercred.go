// Package servercred is how pfrouter servers prove to each other that they
// belong to the organization (SPEC S5, R13b, A5). The organization secret
// deterministically derives an organization CA (Org); each server gets a
// fresh certificate from it at start-up (Identity). Every server-to-server
// connection is TLS 1.3 in which both sides present such a certificate and
// verify the other's (ClientTLS, ServerTLS, WrapServerTLS), so nothing a peer
// receives can be replayed elsewhere. PeerServer tells a listener which
// server is on the other end; callers (node, smtpd, auth) still check that
// the server is in the directory.
//
// The HMAC password (Password, Verify) is the previous mechanism and is kept
// only until its last callers are gone.
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

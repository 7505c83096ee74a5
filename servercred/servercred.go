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
// "server:" names (Prefix) belong to no login any more: protocols refuse a
// password login with one (the replayable HMAC password it once carried is
// gone).
package servercred

import (
	"strings"
)

// Prefix marks a server principal's user name.
const Prefix = "server:"

// Username is the login name of a server.
func Username(server string) string { return Prefix + server }

// IsServerName reports whether a login name is a server principal's.
func IsServerName(username string) bool { return strings.HasPrefix(username, Prefix) }

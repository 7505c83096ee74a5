// Package trusttest gives tests of the packages that use servercred an
// organization, identities and real TLS handshakes on loopback, so they can
// exercise server authentication without duplicating the setup.
package trusttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"pfrouter/servercred"
)

// Secret is a test organization secret that satisfies CheckSecret.
const Secret = "test-org-secret-0123456789abcdef0123456789"

// OtherSecret is another organization's secret.
const OtherSecret = "another-org-secret-fedcba9876543210fedcba"

// Identity issues server's identity in the organization of secret.
func Identity(t testing.TB, secret, server string) *servercred.Identity {
	t.Helper()
	org, err := servercred.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	id, err := org.Identity(server)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ServerState returns the server side's connection state of one handshake
// between client and server configs over loopback; it fails the test when
// the handshake fails.
func ServerState(t testing.TB, client, server *tls.Config) tls.ConnectionState {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		cs  tls.ConnectionState
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		ch <- res{tc.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	cerr := tls.Client(c, client).Handshake()
	r := <-ch
	if cerr != nil || r.err != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, r.err)
	}
	return r.cs
}

// LegacyPassword is the server password of the removed HMAC scheme
// (HMAC-SHA256 of the server name under the secret), as a fake next hop
// could have captured it before server trust moved to TLS certificates.
// Tests replay it to show it opens nothing.
func LegacyPassword(secret, server string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pfrouter-server-v1\x00" + server))
	return hex.EncodeToString(m.Sum(nil))
}

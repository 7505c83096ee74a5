package servercred

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	secretA = "0123456789abcdef0123456789abcdef-org-a"
	secretB = "fedcba9876543210fedcba9876543210-org-b"
)

func mustOrg(t *testing.T, secret string) *Org {
	t.Helper()
	o, err := New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustID(t *testing.T, o *Org, name string) *Identity {
	t.Helper()
	id, err := o.Identity(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// result is what each side of one handshake saw.
type result struct {
	clientErr, serverErr error
	client, server       tls.ConnectionState
}

// handshake runs one TLS handshake over a real loopback socket.
func handshake(t *testing.T, clientCfg, serverCfg *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		err error
		cs  tls.ConnectionState
	}
	srv := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- side{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Server(c, serverCfg)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the client certificate is checked after the client's
			// Finished; read once so a refusal reaches the client.
			_, _ = tc.Write([]byte("x"))
		}
		srv <- side{err: err, cs: tc.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(c, clientCfg)
	var r result
	r.clientErr = tc.Handshake()
	if r.clientErr == nil {
		// The server's verdict on our certificate arrives with the first read.
		_, r.clientErr = tc.Read(make([]byte, 1))
	}
	r.client = tc.ConnectionState()
	s := <-srv
	r.serverErr, r.server = s.err, s.cs
	return r
}

// selfSigned makes a certificate that looks like an org server certificate
// (same URI and DNS SAN) but is signed by nobody the org trusts.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: caCommonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerSNI(name), "localhost"},
		URIs:         []*url.URL{{Scheme: uriScheme, Opaque: name}},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestCheckSecret(t *testing.T) {
	for _, c := range []struct {
		secret string
		ok     bool
	}{
		{"", false},
		{"abc", false},
		{strings.Repeat("x", 31), false},
		{strings.Repeat("x", 32), true},
		{secretA, true},
	} {
		err := CheckSecret(c.secret)
		if (err == nil) != c.ok {
			t.Errorf("CheckSecret(%d chars) = %v, want ok=%v", len(c.secret), err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("error does not say how to generate a secret: %v", err)
		}
		if _, nerr := New(c.secret); (nerr == nil) != c.ok {
			t.Errorf("New(%d chars) = %v, want ok=%v", len(c.secret), nerr, c.ok)
		}
	}
}

// Two processes holding the same secret derive the same CA; another secret
// gives another CA.
func TestCADeterministic(t *testing.T) {
	a1, a2, b := mustOrg(t, secretA), mustOrg(t, secretA), mustOrg(t, secretB)
	if !bytes.Equal(a1.CA().Raw, a2.CA().Raw) {
		t.Fatal("two New() calls with one secret gave different CA certificates")
	}
	if bytes.Equal(a1.CA().Raw, b.CA().Raw) {
		t.Fatal("different secrets gave the same CA")
	}
}

func TestIdentityNames(t *testing.T) {
	o := mustOrg(t, secretA)
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"ex1", true}, {"a2-pub", true}, {"", false}, {"ex 1", false}, {"ex1.example", false},
		{"server:ex1", false}, {strings.Repeat("a", 64), false},
	} {
		id, err := o.Identity(c.name)
		if (err == nil) != c.ok {
			t.Errorf("Identity(%q) = %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		leaf := id.cert.Leaf
		if got, ok := serverOf(leaf); !ok || got != c.name || id.Name() != c.name {
			t.Errorf("Identity(%q): certificate names %q", c.name, got)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != ServerSNI(c.name) {
			t.Errorf("Identity(%q): DNS SAN %v", c.name, leaf.DNSNames)
		}
	}
}

// S5: a server proves itself to a peer with its org certificate; two
// independently built Orgs from one secret trust each other.
func TestOrgHandshake(t *testing.T) {
	ex1 := mustID(t, mustOrg(t, secretA), "ex1")
	ex2 := mustID(t, mustOrg(t, secretA), "ex2") // another process
	r := handshake(t, ex1.ClientTLS("ex2"), ex2.ServerTLS())
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", r.clientErr, r.serverErr)
	}
	if got, ok := PeerServer(r.server); !ok || got != "ex1" {
		t.Errorf("server side PeerServer = %q %v, want ex1", got, ok)
	}
	if got, ok := PeerServer(r.client); !ok || got != "ex2" {
		t.Errorf("client side PeerServer = %q %v, want ex2", got, ok)
	}
	if r.client.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", r.client.Version)
	}
	// Same through a listener shared with users.
	r = handshake(t, ex1.ClientTLS("ex2"), ex2.WrapServerTLS(userConfig(t)))
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("wrapped handshake: client %v, server %v", r.clientErr, r.serverErr)
	}
	if got, ok := PeerServer(r.server); !ok || got != "ex1" {
		t.Errorf("wrapped: PeerServer = %q %v, want ex1", got, ok)
	}
}

// userConfig is a listener's user-facing config: an ordinary certificate.
func userConfig(t *testing.T) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "userfacing")}, MinVersion: tls.VersionTLS12}
}

// Everything that is not a certificate of this organization naming the
// expected server is refused, in both directions.
func TestRefused(t *testing.T) {
	orgA, orgB := mustOrg(t, secretA), mustOrg(t, secretB)
	ex1, ex2, ex3 := mustID(t, orgA, "ex1"), mustID(t, orgA, "ex2"), mustID(t, orgA, "ex3")
	foreign1, foreign2 := mustID(t, orgB, "ex1"), mustID(t, orgB, "ex2")
	fake := selfSigned(t, "ex2")
	fakeServer := &tls.Config{Certificates: []tls.Certificate{fake}}
	fakeClient := ex1.ClientTLS("ex2")
	fakeClient.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &fake, nil }
	noCert := ex1.ClientTLS("ex2")
	noCert.GetClientCertificate = nil

	for _, c := range []struct {
		name           string
		client, server *tls.Config
	}{
		{"server from another secret", ex1.ClientTLS("ex2"), foreign2.ServerTLS()},
		{"client from another secret", foreign1.ClientTLS("ex2"), ex2.ServerTLS()},
		{"client from another secret, shared listener", foreign1.ClientTLS("ex2"), ex2.WrapServerTLS(userConfig(t))},
		{"self-signed server", ex1.ClientTLS("ex2"), fakeServer},
		{"self-signed client", fakeClient, ex2.ServerTLS()},
		{"client without certificate", noCert, ex2.WrapServerTLS(userConfig(t))},
		{"server certificate for another server", ex1.ClientTLS("ex2"), ex3.ServerTLS()},
		{"another server behind a shared listener", ex1.ClientTLS("ex2"), ex3.WrapServerTLS(userConfig(t))},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := handshake(t, c.client, c.server)
			if r.clientErr == nil && r.serverErr == nil {
				t.Fatal("handshake succeeded")
			}
			if r.serverErr == nil {
				if s, ok := PeerServer(r.server); ok {
					t.Errorf("server accepted peer %q", s)
				}
			}
		})
	}
}

// Users on a shared listener get the user certificate and are not asked for
// a client certificate; they never prove a server.
func TestUserOnSharedListener(t *testing.T) {
	ex1 := mustID(t, mustOrg(t, secretA), "ex1")
	user := userConfig(t)
	asked := false
	client := &tls.Config{
		InsecureSkipVerify: true, // a user's mail client trusting the demo certificate
		ServerName:         "mail.contoso.example",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return &tls.Certificate{}, nil
		},
	}
	r := handshake(t, client, ex1.WrapServerTLS(user))
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("user handshake: client %v, server %v", r.clientErr, r.serverErr)
	}
	if asked {
		t.Error("a user was asked for a client certificate")
	}
	if !bytes.Equal(r.client.PeerCertificates[0].Raw, user.Certificates[0].Certificate[0]) {
		t.Error("a user was not served the user certificate")
	}
	if _, ok := PeerServer(r.server); ok {
		t.Error("a user connection proved a server")
	}
	// No SNI at all (a client dialing an IP) is a user too.
	client.ServerName = ""
	if r := handshake(t, client, ex1.WrapServerTLS(user)); r.clientErr != nil || asked {
		t.Errorf("no-SNI user: %v, asked for cert %v", r.clientErr, asked)
	}
	// A listener without a user config serves servers only.
	if r := handshake(t, client, ex1.WrapServerTLS(nil)); r.clientErr == nil && r.serverErr == nil {
		t.Error("WrapServerTLS(nil) served a user")
	}
}

// A user config that itself verifies client certificates (from another CA)
// must not let such a certificate pass as a server, even if it carries the
// pfrouter-server URI.
func TestPeerServerNeedsOrgCA(t *testing.T) {
	ex1 := mustID(t, mustOrg(t, secretA), "ex1")
	other := mustID(t, mustOrg(t, secretB), "ex2")
	otherCert, _ := other.current()
	user := userConfig(t)
	user.ClientAuth = tls.RequireAndVerifyClientCert
	user.ClientCAs = other.org.pool
	client := &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         "mail.contoso.example",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return otherCert, nil
		},
	}
	r := handshake(t, client, ex1.WrapServerTLS(user))
	if r.serverErr != nil {
		t.Fatalf("user-CA handshake: %v", r.serverErr)
	}
	if s, ok := PeerServer(r.server); ok {
		t.Errorf("a user-CA certificate proved server %q", s)
	}
}

// A server certificate is renewed (fresh key) before it expires, and the
// renewed one is still trusted.
func TestRenewal(t *testing.T) {
	org := mustOrg(t, secretA)
	now := time.Now()
	org.now = func() time.Time { return now }
	ex1 := mustID(t, org, "ex1")
	first, _ := ex1.current()
	now = now.Add(leafLife/2 + time.Minute)
	second, _ := ex1.current()
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatal("certificate not renewed after half its life")
	}
	if !second.Leaf.NotAfter.After(now.Add(leafLife / 2)) {
		t.Errorf("renewed certificate expires %v", second.Leaf.NotAfter)
	}
	if _, err := second.Leaf.Verify(x509.VerifyOptions{Roots: org.pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("renewed certificate: %v", err)
	}
}

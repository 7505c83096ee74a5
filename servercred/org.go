package servercred

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MinSecretLen is the shortest organization secret accepted: 32 characters,
// i.e. 128 bits when the secret is hex (`openssl rand -hex 32` gives 64).
const MinSecretLen = 32

// GenerateHint tells an operator how to make a good secret.
const GenerateHint = "generate one with `openssl rand -hex 32`"

// CheckSecret refuses organization secrets shorter than 128 bits of key
// material (at least 32 characters), with an error that says how to generate
// one.
func CheckSecret(secret string) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("organization secret is %d characters, at least %d are required (128 bits); %s", len(secret), MinSecretLen, GenerateHint)
	}
	return nil
}

const (
	caCommonName = "pfrouter organization CA"
	// uriScheme names a server in its certificate: "pfrouter-server:<name>".
	uriScheme = "pfrouter-server"
	// sniSuffix turns a server name into the TLS server name peers send.
	// .invalid (RFC 2606) can never be a real host, so a user-facing
	// certificate is never asked for under it.
	sniSuffix = ".servers.pfrouter.invalid"
	// leafLife is how long a server certificate lives; Identity renews it
	// after half of that, so a long-running server never presents an
	// expired one.
	leafLife = 30 * 24 * time.Hour
	// skew tolerates clocks of peer servers that are a little behind.
	skew = time.Hour
)

// caNotBefore/caNotAfter are fixed so the CA certificate is byte-identical
// in every process holding the secret.
var (
	caNotBefore = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Org is the organization's trust root: a CA whose key is derived
// (HKDF-SHA256) from the organization secret, so every server holding the
// secret has the same CA and nobody without it can mint a server certificate.
type Org struct {
	key  ed25519.PrivateKey
	ca   *x509.Certificate
	pool *x509.CertPool
	now  func() time.Time
}

// New derives the organization CA from secret. It refuses secrets that
// CheckSecret refuses: a weak secret would let anyone mint server
// certificates by guessing it offline.
func New(secret string) (*Org, error) {
	if err := CheckSecret(secret); err != nil {
		return nil, err
	}
	seed, err := hkdf.Key(sha256.New, []byte(secret), []byte("pfrouter-org-ca-v1"), "ed25519 CA key", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("derive organization CA key: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"pfrouter"}},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	// ed25519 signatures are deterministic, so the DER is the same in every
	// process; the random reader is unused by ed25519 signing.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("organization CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("organization CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Org{key: key, ca: ca, pool: pool, now: time.Now}, nil
}

// CA returns the organization CA certificate (public; for diagnostics).
func (o *Org) CA() *x509.Certificate { return o.ca }

// ServerSNI is the TLS server name a peer server sends to reach `server`'s
// org identity: "<server>.servers.pfrouter.invalid".
func ServerSNI(server string) string { return strings.ToLower(server) + sniSuffix }

// isOrgSNI reports whether a TLS server name is in ServerSNI form.
func isOrgSNI(sni string) bool {
	return len(sni) > len(sniSuffix) && strings.HasSuffix(strings.ToLower(sni), sniSuffix)
}

// Identity is one server's certificate, issued by the org CA at start-up
// (fresh key), naming the server (URI SAN "pfrouter-server:<name>" and DNS
// SAN ServerSNI(name)).
type Identity struct {
	org  *Org
	name string

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

// Identity issues the certificate of server `server`.
func (o *Org) Identity(server string) (*Identity, error) {
	if err := CheckServerName(server); err != nil {
		return nil, err
	}
	id := &Identity{org: o, name: server}
	if _, err := id.current(); err != nil {
		return nil, err
	}
	return id, nil
}

// CheckServerName refuses server names that cannot be a DNS label, which
// ServerSNI needs.
func CheckServerName(server string) error {
	if server == "" || len(server) > 63 {
		return fmt.Errorf("server name %q: must be 1 to 63 characters", server)
	}
	for _, r := range server {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("server name %q: only letters, digits and '-' are allowed (it becomes a TLS server name)", server)
		}
	}
	return nil
}

// Name is the server this identity names.
func (id *Identity) Name() string { return id.name }

// current returns the certificate, issuing a new one (fresh key) once the
// old one is past half its life.
func (id *Identity) current() (*tls.Certificate, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	now := id.org.now()
	if id.cert != nil && now.Before(id.renewAt) {
		return id.cert, nil
	}
	cert, err := id.org.issue(id.name, now)
	if err != nil {
		return nil, err
	}
	id.cert, id.renewAt = cert, now.Add(leafLife/2)
	return cert, nil
}

func (o *Org) issue(server string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server key for %s: %w", server, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: server, Organization: []string{"pfrouter"}},
		NotBefore:    now.Add(-skew),
		NotAfter:     now.Add(leafLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerSNI(server)},
		URIs:         []*url.URL{{Scheme: uriScheme, Opaque: server}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, o.ca, &key.PublicKey, crypto.Signer(o.key))
	if err != nil {
		return nil, fmt.Errorf("issue certificate for server %s: %w", server, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, o.ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// serverOf returns the server named by a certificate's URI SAN.
func serverOf(c *x509.Certificate) (string, bool) {
	var name string
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		if name != "" || u.Opaque == "" {
			return "", false // two names, or an empty one: not ours
		}
		name = u.Opaque
	}
	return name, name != ""
}

// verifyPeer checks, after Go's chain verification against the org pool,
// that the peer's certificate is an org server certificate naming `want`
// (any server when want is "").
func verifyPeer(cs tls.ConnectionState, want string) error {
	if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 {
		return errors.New("peer presented no organization certificate")
	}
	got, ok := serverOf(cs.PeerCertificates[0])
	if !ok {
		return errors.New("peer certificate names no pfrouter server")
	}
	if want != "" && !strings.EqualFold(got, want) {
		return fmt.Errorf("peer certificate names server %q, expected %q", got, want)
	}
	return nil
}

// ClientTLS is the config for dialing peer server `peer`: it presents this
// server's certificate, sends ServerSNI(peer), and verifies that the peer's
// certificate chains to the org CA and names `peer`. TLS 1.3 minimum. Never
// InsecureSkipVerify.
func (id *Identity) ClientTLS(peer string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: ServerSNI(peer),
		RootCAs:    id.org.pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPeer(cs, peer); err != nil {
				return fmt.Errorf("server %s is not who it claims to be: %w", peer, err)
			}
			return nil
		},
	}
}

// ServerTLS is the config for listeners only servers use (e.g. a replication
// or gossip stream): org identity, client certificate required and verified.
func (id *Identity) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return id.current()
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  id.org.pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPeer(cs, ""); err != nil {
				return fmt.Errorf("client is not a server of this organization: %w", err)
			}
			return nil
		},
	}
}

// WrapServerTLS returns the config for a listener shared with users (SMTP
// STARTTLS, IMAP, POP3): when the client's SNI is an org server name
// (ServerSNI form) it answers with the org identity and REQUIRES a client
// certificate verified against the org CA; otherwise it uses `user`
// unchanged (users never see the org CA). A nil user config serves servers
// only.
func (id *Identity) WrapServerTLS(user *tls.Config) *tls.Config {
	org := id.ServerTLS()
	var base *tls.Config
	var userHook func(*tls.ClientHelloInfo) (*tls.Config, error)
	if user != nil {
		base = user.Clone()
		userHook = user.GetConfigForClient
	} else {
		base = &tls.Config{MinVersion: tls.VersionTLS13}
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if isOrgSNI(hello.ServerName) {
			return org, nil
		}
		if user == nil {
			return nil, errors.New("this listener serves organization servers only")
		}
		if userHook != nil {
			return userHook(hello)
		}
		return nil, nil
	}
	return base
}

// PeerServer returns the server name proven by a verified org client
// certificate on a connection, or ok=false. Callers must still check that the
// name is a server in the directory.
//
// Proof means: the handshake used an org server name (so WrapServerTLS or
// ServerTLS chose the org config, whose only client CA is the org CA), the
// chain was verified, it ends at the organization CA, and the leaf names
// exactly one server.
func PeerServer(cs tls.ConnectionState) (server string, ok bool) {
	if !cs.HandshakeComplete || !isOrgSNI(cs.ServerName) || len(cs.VerifiedChains) == 0 {
		return "", false
	}
	chain := cs.VerifiedChains[0]
	root := chain[len(chain)-1]
	if len(chain) < 2 || root.Subject.CommonName != caCommonName || !root.IsCA {
		return "", false
	}
	return serverOf(chain[0])
}

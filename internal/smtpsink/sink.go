// Package smtpsink is a test peer: a go-smtp server on 127.0.0.1 that plays
// an outside smarthost for outbound connectors. It records every
// transaction, can offer STARTTLS with a certificate from its own CA (whose
// PEM the test hands to the connector as ca_file), can require AUTH PLAIN,
// and can refuse recipients. Tests of relay and node use it; production
// code never does.
package smtpsink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options shape the sink.
type Options struct {
	TLS      bool              // offer STARTTLS
	Users    map[string]string // AUTH PLAIN user -> password; empty means no AUTH
	RefuseTo string            // recipients containing this get 550 5.1.1
}

// Message is one transaction the sink accepted.
type Message struct {
	From   string
	To     []string
	Data   []byte
	TLS    bool
	AuthAs string
}

// Session is what one connection did, accepted or not.
type Session struct {
	TLS    bool
	AuthAs string
	Mail   bool // a MAIL command arrived
}

// Sink is a running test smarthost.
type Sink struct {
	Addr  string
	CAPEM []byte // the CA that signed the sink's certificate (TLS only)

	mu       sync.Mutex
	msgs     []Message
	sessions []*Session
	srv      *smtp.Server
}

// Start runs a sink until the test ends.
func Start(t testing.TB, o Options) *Sink {
	t.Helper()
	s := &Sink{}
	srv := smtp.NewServer(&backend{s: s, o: o})
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = !o.TLS
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	if o.TLS {
		cfg, caPEM, err := selfCA()
		if err != nil {
			t.Fatal(err)
		}
		srv.TLSConfig, s.CAPEM = cfg, caPEM
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr, s.srv = l.Addr().String(), srv
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Messages returns what was accepted so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Sessions returns every connection's record so far.
func (s *Sink) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, len(s.sessions))
	for i, x := range s.sessions {
		out[i] = *x
	}
	return out
}

// Wait polls until a message containing needle arrived, or fails the test.
func (s *Sink) Wait(t testing.TB, needle string, within time.Duration) Message {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range s.Messages() {
			if strings.Contains(string(m.Data), needle) {
				return m
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("no message containing %q reached the smarthost within %s (%d messages, %d sessions)", needle, within, len(s.Messages()), len(s.Sessions()))
	return Message{}
}

type backend struct {
	s *Sink
	o Options
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	rec := &Session{}
	b.s.mu.Lock()
	b.s.sessions = append(b.s.sessions, rec)
	b.s.mu.Unlock()
	return &session{b: b, c: c, rec: rec}, nil
}

type session struct {
	b    *backend
	c    *smtp.Conn
	rec  *Session
	from string
	to   []string
}

func (s *session) set(fn func()) {
	s.b.s.mu.Lock()
	defer s.b.s.mu.Unlock()
	fn()
}

func (s *session) tlsOn() bool { _, ok := s.c.TLSConnectionState(); return ok }

func (s *session) AuthMechanisms() []string {
	if len(s.b.o.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if pw, ok := s.b.o.Users[user]; !ok || pw != pass {
			return errors.New("bad credentials")
		}
		s.set(func() { s.rec.AuthAs = user })
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.set(func() { s.rec.Mail, s.rec.TLS = true, s.tlsOn() })
	if len(s.b.o.Users) > 0 && s.rec.AuthAs == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.o.RefuseTo != "" && strings.Contains(to, s.b.o.RefuseTo) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: s.from, To: s.to, Data: b, TLS: s.tlsOn(), AuthAs: s.rec.AuthAs}
	s.set(func() { s.b.s.msgs = append(s.b.s.msgs, m) })
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// selfCA makes a CA and a certificate for 127.0.0.1 and localhost signed by
// it: the smarthost's certificate verifies only with the CA given as
// ca_file, not with the system roots.
func selfCA() (*tls.Config, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtpsink test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

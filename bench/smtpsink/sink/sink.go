// Package sink is an SMTP server (go-smtp, the library pfrouter's smtpd is
// built on) that accepts every recipient, reads each message to the end,
// throws it away and answers 250. What it sustains on a machine is the
// ceiling of the SMTP protocol layer there: pfrouter's ingress is that plus
// header handling and the durable queue. The smtpsink command and
// bench/ingress_test.go run it; package bench/smtpload/load drives it.
package sink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Options configure a sink.
type Options struct {
	Domain string // banner name; default "smtpsink.invalid"
	// TLS offers STARTTLS with a self-signed certificate made at start.
	TLS bool
	// ReadAll reads each message into memory before discarding it, as
	// pfrouter's smtpd does; otherwise it is copied to io.Discard.
	ReadAll bool
}

// Server is a running sink.
type Server struct {
	smtp     *smtp.Server
	opts     Options
	messages atomic.Int64
	bytes    atomic.Int64
}

// New builds a sink.
func New(o Options) (*Server, error) {
	if o.Domain == "" {
		o.Domain = "smtpsink.invalid"
	}
	s := &Server{opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = o.Domain
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 1000
	srv.AllowInsecureAuth = true
	srv.ErrorLog = discardLogger{}
	if o.TLS {
		cfg, err := selfSigned(o.Domain)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = cfg
	}
	s.smtp = srv
	return s, nil
}

// Serve accepts sessions on l until Close.
func (s *Server) Serve(l net.Listener) error { return s.smtp.Serve(l) }

// Close stops the sink at once.
func (s *Server) Close() error { return s.smtp.Close() }

// Shutdown stops accepting and waits for sessions to end, or ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// Messages is how many messages the sink accepted; Bytes their size.
func (s *Server) Messages() int64 { return s.messages.Load() }

// Bytes is the total size of the accepted messages.
func (s *Server) Bytes() int64 { return s.bytes.Load() }

type session struct{ s *Server }

func (*session) Mail(string, *smtp.MailOptions) error { return nil }
func (*session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*session) Reset()                               {}
func (*session) Logout() error                        { return nil }

func (ss *session) Data(r io.Reader) error {
	var n int64
	var err error
	if ss.s.opts.ReadAll {
		var b []byte
		b, err = io.ReadAll(r)
		n = int64(len(b))
	} else {
		n, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return err
	}
	ss.s.messages.Add(1)
	ss.s.bytes.Add(n)
	return nil
}

func selfSigned(name string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sink certificate key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name, "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sink certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"pfrouter/servercred"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memMaildrop is an in-memory Maildrop test double that records calls.
type memMaildrop struct {
	mu       sync.Mutex
	uids     []string
	bodies   map[string]string
	sizes    map[string]int64 // overrides TransmittedSize when set
	deletes  [][]string
	closes   int
	closed   chan struct{}
	openErr  error
	listErr  error
	deleteEr error
}

func newMaildrop(msgs ...string) *memMaildrop {
	m := &memMaildrop{bodies: map[string]string{}, sizes: map[string]int64{}, closed: make(chan struct{})}
	for i, b := range msgs {
		uid := fmt.Sprintf("uid-%d", i+1)
		m.uids = append(m.uids, uid)
		m.bodies[uid] = b
	}
	return m
}

func (m *memMaildrop) Messages(context.Context) ([]MessageInfo, error) {
	if m.listErr != nil {
		return nil, m.listErr
	}
	var out []MessageInfo
	for _, uid := range m.uids {
		size, ok := m.sizes[uid]
		if !ok {
			var err error
			size, err = TransmittedSize(strings.NewReader(m.bodies[uid]))
			if err != nil {
				return nil, err
			}
		}
		out = append(out, MessageInfo{UID: uid, Size: size})
	}
	return out, nil
}

func (m *memMaildrop) Open(_ context.Context, uid string) (io.ReadCloser, error) {
	if m.openErr != nil {
		return nil, m.openErr
	}
	b, ok := m.bodies[uid]
	if !ok {
		return nil, fmt.Errorf("no message %q", uid)
	}
	return io.NopCloser(strings.NewReader(b)), nil
}

func (m *memMaildrop) Delete(_ context.Context, uids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deletes = append(m.deletes, slices.Clone(uids))
	return m.deleteEr
}

func (m *memMaildrop) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closes++
	if m.closes == 1 {
		close(m.closed)
	}
	return nil
}

func (m *memMaildrop) deleteCalls() [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.deletes)
}

func (m *memMaildrop) closeCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closes
}

// waitClosed polls (with a deadline) for the session to release the maildrop.
func (m *memMaildrop) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-m.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("maildrop was never closed")
	}
}

// fakeAuth accepts user "alice" with password "secret pw" and hands out
// its maildrop (or proxy conn); it records every request.
type fakeAuth struct {
	mu      sync.Mutex
	md      *memMaildrop
	proxy   func() (net.Conn, error)
	err     error // returned for good credentials, when set
	reqs    []AuthRequest
	user    string
	pass    string
	authzOK string // accepted authzid besides ""
	peer    string // server accepted with EXTERNAL, proven by its certificate
}

func (a *fakeAuth) Authenticate(_ context.Context, req AuthRequest) (Result, error) {
	a.mu.Lock()
	a.reqs = append(a.reqs, req)
	a.mu.Unlock()
	if req.Mechanism == "EXTERNAL" {
		if req.TLSState == nil || req.AuthzID != a.authzOK {
			return Result{}, &AuthError{Code: "AUTH", Msg: "invalid credentials"}
		}
		if p, ok := servercred.PeerServer(*req.TLSState); !ok || p != a.peer {
			return Result{}, &AuthError{Code: "AUTH", Msg: "invalid credentials"}
		}
		return Result{User: req.AuthzID, Maildrop: a.md}, nil
	}
	user, pass := a.user, a.pass
	if user == "" {
		user, pass = "alice", "secret pw"
	}
	if req.Username != user || req.Password != pass || (req.AuthzID != "" && req.AuthzID != a.authzOK) {
		return Result{}, &AuthError{Code: "AUTH", Msg: "invalid credentials"}
	}
	if a.err != nil {
		return Result{}, a.err
	}
	if a.proxy != nil {
		c, err := a.proxy()
		if err != nil {
			return Result{}, &AuthError{Code: "SYS/TEMP", Msg: err.Error()}
		}
		return Result{User: user, Proxy: c}, nil
	}
	return Result{User: user, Maildrop: a.md}, nil
}

func (a *fakeAuth) requests() []AuthRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServer serves opts on 127.0.0.1:0 and returns the address.
func startServer(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "pop.test"
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, l.Addr().String()
}

// client is a minimal raw POP3 client for tests.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if g := cl.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (cl *client) send(line string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, line+"\r\n"); err != nil {
		cl.t.Fatalf("send %q: %v", line, err)
	}
}

func (cl *client) line() string {
	cl.t.Helper()
	s, err := cl.r.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		cl.t.Fatalf("line %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// cmd sends a command and returns the one-line answer.
func (cl *client) cmd(line string) string {
	cl.t.Helper()
	cl.send(line)
	return cl.line()
}

// expect sends a command and checks the answer's prefix.
func (cl *client) expect(line, prefix string) string {
	cl.t.Helper()
	got := cl.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		cl.t.Fatalf("%s: got %q, want prefix %q", line, got, prefix)
	}
	return got
}

// dotBody reads a multi-line body after its status line, returning the raw
// wire lines (still stuffed) without the terminator.
func (cl *client) dotBody() []string {
	cl.t.Helper()
	var out []string
	for {
		l := cl.line()
		if l == "." {
			return out
		}
		out = append(out, l)
	}
}

// multi sends a command, expects +OK and returns the raw body lines.
func (cl *client) multi(line string) []string {
	cl.t.Helper()
	cl.expect(line, "+OK")
	return cl.dotBody()
}

func (cl *client) login() {
	cl.t.Helper()
	cl.expect("USER alice", "+OK")
	cl.expect("PASS secret pw", "+OK")
}

// expectClosed polls until the server closes the connection.
func (cl *client) expectClosed() {
	cl.t.Helper()
	_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := cl.r.ReadByte(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				cl.t.Fatal("server did not close the connection")
			}
			return
		}
	}
}

// selfSigned makes a server TLS config and a client config trusting it.
func selfSigned(t testing.TB) (server, clientCfg *tls.Config, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	clientCfg = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return server, clientCfg, caFile
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

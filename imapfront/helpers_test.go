package imapfront

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"pfrouter/auth"
	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/internal/trusttest"
)

// selfSigned makes a server certificate for 127.0.0.1 and a client config
// trusting it.
func selfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pfrouter test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// orgYAML: ex1 and ex2 in site tokyo, ex3 in site berlin. Slots: access,
// ex2's imap address, ex3's imap address.
const orgYAML = `organization: T
domains: [x.example]
access: {%s}
sites: [{name: tokyo}, {name: berlin}]
routing_groups: [{name: a}, {name: b}]
connectors:
  - {name: ab, between: [a, b], cost: 10, bridgeheads: {a: [ex1], b: [ex3]}}
servers:
  - {name: ex1, site: tokyo, routing_group: a, listen: {smtp: "127.0.0.1:11", imap: "127.0.0.1:1"}, stores: [{name: m1, kind: mailbox}]}
  - {name: ex2, site: tokyo, routing_group: a, listen: {smtp: "127.0.0.1:12", imap: %q}, stores: [{name: m2, kind: mailbox}]}
  - {name: ex3, site: berlin, routing_group: b, listen: {smtp: "127.0.0.1:13", imap: %q}, stores: [{name: m3, kind: mailbox}]}
users:
  - {name: alice, addresses: [alice@x.example], mailbox_store: m1, password: alice-pw}
  - {name: dan, addresses: [dan@x.example], mailbox_store: m2, password: dan-pw}
  - {name: bob, addresses: [bob@x.example], mailbox_store: m3, password: bob-pw}
  - {name: carol, addresses: [carol@x.example], mailbox_store: m1, password: carol-pw, imap_enabled: false}
`

func newDir(t testing.TB, access, ex2, ex3 string) *directory.Directory {
	t.Helper()
	org, err := config.Parse([]byte(fmt.Sprintf(orgYAML, access, ex2, ex3)), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// fakeLocal stands for imapd: it records each handed-over session and
// answers every tagged command with "<tag> OK <name> <user> got <command>".
type fakeLocal struct {
	name  string
	users chan string
}

func newFakeLocal(name string) *fakeLocal {
	return &fakeLocal{name: name, users: make(chan string, 10)}
}

func (f *fakeLocal) ServeConn(conn net.Conn, user string) error {
	f.users <- user
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		name, _, _ := strings.Cut(rest, " ")
		if strings.EqualFold(name, "LOGOUT") {
			fmt.Fprintf(conn, "* BYE bye\r\n%s OK LOGOUT completed\r\n", tag)
			return nil
		}
		fmt.Fprintf(conn, "%s OK %s %s got %s\r\n", tag, f.name, user, strings.ToUpper(name))
	}
}

// frontend is a running imapfront server for tests.
type frontend struct {
	srv    *Server
	addr   string // plain listener
	tlsAdr string // implicit TLS listener
	local  *fakeLocal
	logs   *logBuf
	client *tls.Config
}

type feOpts struct {
	name, loginType, crossSite string
	dir                        *directory.Directory
	listener                   net.Listener // plain listener opened before the directory was written
	perIP, perUser             int          // connection caps (0: defaults)
}

func startFrontend(t *testing.T, o feOpts) *frontend {
	t.Helper()
	serverTLS, clientTLS := selfSigned(t)
	logs := &logBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pol := auth.New(auth.Options{Directory: o.dir, ServerName: o.name, LoginType: o.loginType,
		CrossSite: o.crossSite, Logger: logger, FailureDelay: -1})
	local := newFakeLocal(o.name)
	id := trusttest.Identity(t, trusttest.Secret, o.name)
	srv := New(Options{ServerName: o.name, Policy: pol, Local: local, TLSConfig: id.WrapServerTLS(serverTLS),
		Logger: logger, PeerTLS: id.ClientTLS, MaxConnsPerIP: o.perIP, MaxConnsPerUser: o.perUser})
	l := o.listener
	if l == nil {
		l = listen(t)
	}
	lt := listen(t)
	go srv.Serve(l)
	go srv.ServeTLS(lt)
	t.Cleanup(func() { srv.Close() })
	return &frontend{srv: srv, addr: l.Addr().String(), tlsAdr: lt.Addr().String(), local: local, logs: logs, client: clientTLS}
}

func listen(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// client is a line-level IMAP test client.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads one line and checks its prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// cmd sends a command and returns the untagged lines and the tagged one.
func (c *client) cmd(tag, s string) ([]string, string) {
	c.t.Helper()
	c.send(tag + " " + s)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	if _, ok := c.cmd("s1", "STARTTLS"); !strings.HasPrefix(ok, "s1 OK") {
		c.t.Fatalf("STARTTLS: %q", ok)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// expectClosed checks the server closed the connection (after any lines).
func (c *client) expectClosed() {
	c.t.Helper()
	for {
		_, err := c.r.ReadString('\n')
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatal("connection still open")
			}
			return
		}
	}
}

func waitUser(t *testing.T, f *fakeLocal, want string) {
	t.Helper()
	select {
	case u := <-f.users:
		if u != want {
			t.Fatalf("%s: handed over user %q, want %q", f.name, u, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no session handed over", f.name)
	}
}

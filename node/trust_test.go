package node

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pfrouter/internal/trusttest"
	"pfrouter/servercred"
)

// trustOrg: s1 holds alice's mailbox and the /Board folder (Anonymous:
// None); s2 is a front end; s9 is in the directory with its SMTP address
// pointing at a fake next hop the test runs, and holds the only replica of
// /Trap, so a post to trap@ makes s1 relay to the fake.
const trustOrg = `
organization: Trust
domains: [trust.example]
secret: %s
routing: {retry_initial: 200ms, retry_max: 1s, probe_interval: 300ms, hold_down: 300ms, failure_threshold: 2}
access: {login_type: SecureLogin}
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - {name: s1, site: one, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", pop3: "127.0.0.1:0"},
     stores: [{name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}, {name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: one, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", pop3: "127.0.0.1:0"}}
  - {name: s9, site: one, routing_group: rg, listen: {smtp: %q},
     stores: [{name: s9-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Board, hierarchy: PF, addresses: [board@trust.example], replicas: [s1-pub], permissions: {Default: Reviewer, Anonymous: None}}
  - {path: /Trap, hierarchy: PF, addresses: [trap@trust.example], replicas: [s9-pub]}
users:
  - {name: alice, addresses: [alice@trust.example], mailbox_store: s1-mbx, password: alice-pw}
`

const trustSecret = "trust-secret-0123456789abcdef0123456789abcdef"

// fakeHop is a fake next hop: it speaks just enough SMTP to tempt a relay
// into sending a credential (it offers AUTH, accepts anything) and records
// every byte it is sent, in clear and inside TLS.
type fakeHop struct {
	l    net.Listener
	mode atomic.Int32 // 0: no STARTTLS; 1: STARTTLS, foreign name; 2: STARTTLS, self-signed with s9's names
	mu   sync.Mutex
	log  [3]hopLog
}

type hopLog struct {
	conns     int
	lines     []string // every command line received, in clear or in TLS
	handshake []error  // result of each TLS handshake (server side)
	certs     int      // client certificates received
}

func (f *fakeHop) snapshot(mode int) hopLog {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.log[mode]
	l.lines = append([]string(nil), l.lines...)
	l.handshake = append([]error(nil), l.handshake...)
	return l
}

func (f *fakeHop) serve(t *testing.T, certs [3]tls.Certificate) {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		go f.session(c, int(f.mode.Load()), certs)
	}
}

func (f *fakeHop) session(c net.Conn, mode int, certs [3]tls.Certificate) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rec := func(fn func(l *hopLog)) { f.mu.Lock(); fn(&f.log[mode]); f.mu.Unlock() }
	rec(func(l *hopLog) { l.conns++ })
	var conn net.Conn = c
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "220 fake.example ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		rec(func(l *hopLog) { l.lines = append(l.lines, line) })
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch {
		case verb == "EHLO" || verb == "HELO":
			tlsLine := ""
			if mode > 0 && conn == c {
				tlsLine = "250-STARTTLS\r\n"
			}
			fmt.Fprintf(conn, "250-fake.example\r\n%s250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n", tlsLine)
		case verb == "STARTTLS" && mode > 0 && conn == c:
			fmt.Fprintf(conn, "220 go ahead\r\n")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{certs[mode]}, ClientAuth: tls.RequestClientCert})
			err := tc.Handshake()
			rec(func(l *hopLog) {
				l.handshake = append(l.handshake, err)
				l.certs += len(tc.ConnectionState().PeerCertificates)
			})
			if err != nil {
				return
			}
			conn, br = tc, bufio.NewReader(tc)
		case verb == "AUTH":
			fmt.Fprintf(conn, "235 2.7.0 welcome\r\n")
		case verb == "QUIT":
			fmt.Fprintf(conn, "221 bye\r\n")
			return
		case verb == "DATA":
			fmt.Fprintf(conn, "354 go\r\n")
		default:
			fmt.Fprintf(conn, "250 ok\r\n")
		}
	}
}

// fakeCert is a self-signed certificate for the given DNS names, with the
// org URI for server (when not "").
func fakeCert(t *testing.T, server string, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if server != "" {
		tmpl.URIs = []*url.URL{{Scheme: "pfrouter-server", Opaque: server}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// queueReasons is every queued envelope, for the reasons the relay gave.
func queueReasons(n *Node) string {
	var b strings.Builder
	n.Queue.Scan(func(_ string, v []byte) error { b.Write(v); return nil })
	return b.String()
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// S5, issue 10 item 5: the capture-and-replay attack, scripted. A fake next
// hop — first plaintext without STARTTLS, then TLS with a self-signed
// certificate of another name, then one that copies s9's names — receives
// no credential and nothing of the message, and the relay refuses it; then
// nothing such a fake could have captured (the old HMAC credential, or a
// certificate of a server not in the directory) opens a mailbox over IMAP
// or POP3 or posts with forged relay headers where Anonymous has None.
func TestS5CaptureAndReplay(t *testing.T) {
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	fake := &fakeHop{l: fl}
	certs := [3]tls.Certificate{{}, fakeCert(t, "", "mx.evil.example"), fakeCert(t, "s9", servercred.ServerSNI("s9"), "localhost")}
	go fake.serve(t, certs)

	org := parseOrg(t, fmt.Sprintf(trustOrg, trustSecret, fl.Addr().String()))
	c, err := StartAll(t.Context(), org, []string{"s1", "s2"}, Options{BaseDir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(t.Context()) })
	s1 := c.Nodes["s1"]

	if _, err := post(t, s1, "someone@example.net", "trap@trust.example", "for the fake"); err != nil {
		t.Fatal(err)
	}
	// Plaintext: the relay says EHLO, sees no STARTTLS, and leaves.
	waitFor(t, "a relay attempt without STARTTLS", func() bool {
		return fake.snapshot(0).conns > 0 && strings.Contains(queueReasons(s1), "does not offer STARTTLS")
	})
	fake.mode.Store(1)
	waitFor(t, "a relay attempt to a foreign certificate", func() bool { return len(fake.snapshot(1).handshake) > 0 })
	fake.mode.Store(2)
	waitFor(t, "a relay attempt to a self-signed copy of s9's names", func() bool { return len(fake.snapshot(2).handshake) > 0 })

	hmac := trusttest.LegacyPassword(trustSecret, "s1")
	for mode := 0; mode < 3; mode++ {
		l := fake.snapshot(mode)
		for _, line := range l.lines {
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			if verb != "EHLO" && verb != "STARTTLS" && verb != "QUIT" {
				t.Errorf("fake (mode %d) received %q: only EHLO, STARTTLS and QUIT may reach an unproven hop", mode, line)
			}
			if strings.Contains(line, hmac) || strings.Contains(line, base64.StdEncoding.EncodeToString([]byte("server:s1"))) {
				t.Errorf("fake (mode %d) received a credential: %q", mode, line)
			}
		}
		for _, err := range l.handshake {
			if err == nil {
				t.Errorf("fake (mode %d): the relay completed a TLS handshake with it", mode)
			}
		}
		if l.certs != 0 {
			t.Errorf("fake (mode %d) received %d client certificates", mode, l.certs)
		}
	}
	if got := queueReasons(s1); !strings.Contains(got, "trap@trust.example") {
		t.Errorf("the post to the fake's folder left the queue (delivered or dropped): %s", got)
	}

	// Replay: the old server credential, as a fake would have captured it,
	// opens nothing. Positive controls first, so the rate limiter has not
	// yet seen failures: a real server (s2) with its certificate does get
	// in, which shows each refusal below is about the credential.
	imapAddr, popAddr, smtpAddr := listen(c, "s1", "imap"), listen(c, "s1", "pop3"), listen(c, "s1", "smtp")
	s2id := c.Nodes["s2"].Identity
	other, err := servercred.New(trustSecret)
	if err != nil {
		t.Fatal(err)
	}
	s7id, err := other.Identity("s7") // minted with the secret, but s7 is not in the directory
	if err != nil {
		t.Fatal(err)
	}
	plainIR := base64.StdEncoding.EncodeToString([]byte("alice\x00" + servercred.Username("s2") + "\x00" + trusttest.LegacyPassword(trustSecret, "s2")))
	ext := base64.StdEncoding.EncodeToString([]byte("alice"))

	if got := imapCmd(t, imapAddr, s2id.ClientTLS("s1"), "AUTHENTICATE EXTERNAL "+ext); !strings.HasPrefix(got, "x OK") {
		t.Fatalf("control: s2's EXTERNAL for alice at s1: %q", got)
	}
	if got := popCmd(t, popAddr, s2id.ClientTLS("s1"), "AUTH EXTERNAL "+ext); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("control: s2's POP3 EXTERNAL for alice at s1: %q", got)
	}
	if got := smtpRcpt(t, smtpAddr, s2id.ClientTLS("s1"), "", "board@trust.example"); !strings.HasPrefix(got, "250") {
		t.Fatalf("control: s2 relaying to board@: %q", got)
	}

	user := &tls.Config{InsecureSkipVerify: true, ServerName: "mail.trust.example"}
	if got := imapCmd(t, imapAddr, user, "AUTHENTICATE PLAIN "+plainIR); !strings.HasPrefix(got, "x NO") {
		t.Errorf("IMAP AUTHENTICATE PLAIN as alice with server:s2 and the HMAC: %q", got)
	}
	if got := popCmd(t, popAddr, user, "AUTH PLAIN "+plainIR); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("POP3 AUTH PLAIN as alice with server:s2 and the HMAC: %q", got)
	}
	smtpPlain := base64.StdEncoding.EncodeToString([]byte("\x00" + servercred.Username("s2") + "\x00" + trusttest.LegacyPassword(trustSecret, "s2")))
	if got := smtpRcpt(t, smtpAddr, user, smtpPlain, "board@trust.example"); !strings.HasPrefix(got, "535") {
		t.Errorf("SMTP AUTH PLAIN as server:s2 with the HMAC: %q", got)
	}
	// A certificate for a server that is not in the directory.
	if got := imapCmd(t, imapAddr, s7id.ClientTLS("s1"), "AUTHENTICATE EXTERNAL "+ext); !strings.HasPrefix(got, "x NO") {
		t.Errorf("IMAP EXTERNAL with s7's certificate: %q", got)
	}
	if got := popCmd(t, popAddr, s7id.ClientTLS("s1"), "AUTH EXTERNAL "+ext); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("POP3 EXTERNAL with s7's certificate: %q", got)
	}
	if got := smtpRcpt(t, smtpAddr, s7id.ClientTLS("s1"), "", "board@trust.example"); !strings.HasPrefix(got, "550") {
		t.Errorf("SMTP with s7's certificate posting to board@ (Anonymous: None): %q", got)
	}
	// Forged relay headers from a session that is no server's are dropped:
	// the post is checked as anonymous and refused before DATA.
	if got := smtpRcpt(t, smtpAddr, user, "", "board@trust.example"); !strings.HasPrefix(got, "550") {
		t.Errorf("anonymous post to board@: %q", got)
	}
}

// startTLS dials addr, reads the greeting, sends upgrade and, when ok
// accepts its answer, completes a TLS handshake with cfg. It returns the
// TLS connection and its reader, or the refusal or handshake error as text.
func startTLS(t *testing.T, addr string, cfg *tls.Config, upgrade string, ok func(*bufio.Reader) (string, bool)) (*tls.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n')
	fmt.Fprintf(c, "%s\r\n", upgrade)
	if l, good := ok(br); !good {
		return nil, nil, l
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, nil, "handshake: " + err.Error()
	}
	return tc, bufio.NewReader(tc), ""
}

// imapCmd upgrades with STARTTLS using cfg and sends one tagged command
// ("x ..."), returning the tagged answer.
func imapCmd(t *testing.T, addr string, cfg *tls.Config, cmd string) string {
	t.Helper()
	tc, br, refused := startTLS(t, addr, cfg, "s STARTTLS", func(br *bufio.Reader) (string, bool) {
		l := readTagged(br, "s")
		return l, strings.HasPrefix(l, "s OK")
	})
	if tc == nil {
		return refused
	}
	fmt.Fprintf(tc, "x %s\r\n", cmd)
	return readTagged(br, "x")
}

func readTagged(br *bufio.Reader, tag string) string {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "read: " + err.Error()
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// popCmd upgrades with STLS using cfg and sends cmd.
func popCmd(t *testing.T, addr string, cfg *tls.Config, cmd string) string {
	t.Helper()
	tc, br, refused := startTLS(t, addr, cfg, "STLS", func(br *bufio.Reader) (string, bool) {
		l, _ := br.ReadString('\n')
		return l, strings.HasPrefix(l, "+OK")
	})
	if tc == nil {
		return refused
	}
	fmt.Fprintf(tc, "%s\r\n", cmd)
	l, _ := br.ReadString('\n')
	return strings.TrimRight(l, "\r\n")
}

// smtpRcpt dials addr, upgrades with STARTTLS using cfg, optionally says
// AUTH PLAIN ir (returning its refusal), and sends MAIL and RCPT to rcpt
// with a message carrying forged relay headers when RCPT is accepted;
// it returns the first refusal or the RCPT answer.
func smtpRcpt(t *testing.T, addr string, cfg *tls.Config, authIR, rcpt string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return "read: " + err.Error()
			}
			last = strings.TrimRight(l, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	reply()
	fmt.Fprintf(c, "EHLO attacker.example\r\n")
	reply()
	fmt.Fprintf(c, "STARTTLS\r\n")
	if l := reply(); !strings.HasPrefix(l, "220") {
		return l
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return "handshake: " + err.Error()
	}
	c, br = tc, bufio.NewReader(tc)
	fmt.Fprintf(c, "EHLO attacker.example\r\n")
	reply()
	if authIR != "" {
		fmt.Fprintf(c, "AUTH PLAIN %s\r\n", authIR)
		if l := reply(); !strings.HasPrefix(l, "235") {
			return l
		}
	}
	fmt.Fprintf(c, "MAIL FROM:<x@example.net>\r\n")
	if l := reply(); !strings.HasPrefix(l, "250") {
		return l
	}
	fmt.Fprintf(c, "RCPT TO:<%s>\r\n", rcpt)
	l := reply()
	fmt.Fprintf(c, "QUIT\r\n")
	return l
}

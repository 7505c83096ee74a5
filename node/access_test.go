package node

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// accessOrg: two sites; alice's mailbox on s1 (site tokyo), s2 a front end
// in the same site, s3 a front end in site berlin.
const accessOrg = `
organization: Access
domains: [acc.example]
secret: access-secret-0123456789abcdef0123456789
access: {cross_site: %s, login_type: SecureLogin}
routing_groups: [{name: rg}]
sites: [{name: tokyo}, {name: berlin}]
servers:
  - {name: s1, site: tokyo, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", pop3: "127.0.0.1:0", pop3s: "127.0.0.1:0"},
     stores: [{name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}, {name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: tokyo, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", pop3: "127.0.0.1:0"}}
  - {name: s3, site: berlin, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", pop3: "127.0.0.1:0"}}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /News, hierarchy: PF, addresses: [news@acc.example], replicas: [s1-pub]}
users:
  - {name: alice, addresses: [alice@acc.example], mailbox_store: s1-mbx, password: alice-pw}
  - {name: carol, addresses: [carol@acc.example], mailbox_store: s1-mbx, password: carol-pw, pop_enabled: false}
`

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startAccessOrg(t *testing.T, crossSite string) (*Cluster, *logBuf) {
	t.Helper()
	org := parseOrg(t, fmt.Sprintf(accessOrg, crossSite))
	logs := &logBuf{}
	c, err := StartAll(t.Context(), org, nil, Options{BaseDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(t.Context()) })
	return c, logs
}

func listen(c *Cluster, server, key string) string {
	s := c.Nodes[server].Org.ServerByName(server)
	switch key {
	case "imap":
		return s.Listen.IMAP
	case "pop3":
		return s.Listen.POP3
	case "pop3s":
		return s.Listen.POP3S
	}
	return s.Listen.SMTP
}

var insecure = &tls.Config{InsecureSkipVerify: true}

func imapLogin(t *testing.T, addr, user, pw string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: insecure, UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login at %s: %v", addr, err)
	}
	return c
}

func deliverTo(t *testing.T, c *Cluster, rcpt, subject string) string {
	t.Helper()
	id, err := post(t, c.Nodes["s2"], "someone@example.net", rcpt, subject)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A5, A7: mail delivered over SMTP is read over IMAP on the mailbox server,
// through a same-site front end and through another site's front end
// (cross_site: proxy).
func TestAccessIMAPDirectAndProxied(t *testing.T) {
	c, _ := startAccessOrg(t, "proxy")
	id := deliverTo(t, c, "alice@acc.example", "imap read")
	waitMessage(t, c.Nodes["s1"], mbox("s1-mbx", "alice"), id, 10*time.Second)
	for _, srv := range []string{"s1", "s2", "s3"} {
		cl := imapLogin(t, listen(c, srv, "imap"), "alice", "alice-pw", nil)
		sel, err := cl.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatalf("%s: select: %v", srv, err)
		}
		if sel.NumMessages != 1 {
			t.Fatalf("%s: %d messages", srv, sel.NumMessages)
		}
		msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: fetch: %v", srv, err)
		}
		var body []byte
		for _, b := range msgs[0].BodySection {
			body = b.Bytes
		}
		if !bytes.Contains(body, []byte(id)) {
			t.Errorf("%s: fetched body lacks %s", srv, id)
		}
		cl.Logout().Wait()
	}
}

// A5: with cross_site: refuse, another site's front end refuses the login
// and logs event 1008 with the user, the mailbox site and the front end.
func TestAccessCrossSiteRefused(t *testing.T) {
	c, logs := startAccessOrg(t, "refuse")
	cl, err := imapclient.DialStartTLS(listen(c, "s3", "imap"), &imapclient.Options{TLSConfig: insecure})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login("alice", "alice-pw").Wait(); err == nil {
		t.Fatal("cross-site login accepted under cross_site: refuse")
	}
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "event_id=1008") {
			line = l
		}
	}
	for _, want := range []string{"alice", "tokyo", "s3"} {
		if !strings.Contains(line, want) {
			t.Errorf("1008 log line lacks %q: %q", want, line)
		}
	}
	// Same site still proxies.
	imapLogin(t, listen(c, "s2", "imap"), "alice", "alice-pw", nil)
}

// A9: a client idling on INBOX sees a message delivered over SMTP.
func TestAccessIDLE(t *testing.T) {
	c, _ := startAccessOrg(t, "proxy")
	exists := make(chan uint32, 8)
	cl := imapLogin(t, listen(c, "s1", "imap"), "alice", "alice-pw", &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	})
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := cl.Idle()
	if err != nil {
		t.Fatal(err)
	}
	deliverTo(t, c, "alice@acc.example", "idle push")
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("EXISTS %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EXISTS pushed to the idling client")
	}
	idle.Close()
}

// pop3 is a minimal RFC 1939 client over textproto lines.
type pop3 struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialPOP3(t *testing.T, addr string, implicitTLS bool) *pop3 {
	t.Helper()
	var c net.Conn
	var err error
	if implicitTLS {
		c, err = tls.Dial("tcp", addr, insecure)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	p := &pop3{t: t, c: c, br: bufio.NewReader(c)}
	p.line("+OK")
	return p
}

func (p *pop3) line(prefix string) string {
	p.t.Helper()
	l, err := p.br.ReadString('\n')
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	if !strings.HasPrefix(l, prefix) {
		p.t.Fatalf("want %q, got %q", prefix, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *pop3) cmd(c, prefix string) string {
	p.t.Helper()
	fmt.Fprintf(p.c, "%s\r\n", c)
	return p.line(prefix)
}

func (p *pop3) stls() {
	p.cmd("STLS", "+OK")
	tc := tls.Client(p.c, insecure)
	if err := tc.Handshake(); err != nil {
		p.t.Fatal(err)
	}
	p.c, p.br = tc, bufio.NewReader(tc)
}

func (p *pop3) login(user, pw string) {
	p.cmd("USER "+user, "+OK")
	p.cmd("PASS "+pw, "+OK")
}

// A2, A3, A6: SecureLogin refuses USER before STLS; a POP3-disabled user
// is refused; DELE then dropped connection removes nothing; DELE then QUIT
// removes; the same through a proxying front end.
func TestAccessPOP3(t *testing.T) {
	c, _ := startAccessOrg(t, "proxy")
	id1 := deliverTo(t, c, "alice@acc.example", "pop one")
	id2 := deliverTo(t, c, "alice@acc.example", "pop two")
	waitMessage(t, c.Nodes["s1"], mbox("s1-mbx", "alice"), id1, 10*time.Second)
	waitMessage(t, c.Nodes["s1"], mbox("s1-mbx", "alice"), id2, 10*time.Second)

	p := dialPOP3(t, listen(c, "s1", "pop3"), false)
	p.cmd("USER alice", "-ERR")
	p.stls()
	p.cmd("USER carol", "+OK")
	if l := p.cmd("PASS carol-pw", "-ERR"); !strings.Contains(l, "[AUTH]") {
		t.Errorf("disabled user: %q", l)
	}
	p.c.Close()

	p = dialPOP3(t, listen(c, "s1", "pop3s"), true)
	p.login("alice", "alice-pw")
	if l := p.cmd("STAT", "+OK 2 "); l == "" {
		t.Fatal("stat")
	}
	p.cmd("DELE 1", "+OK")
	p.c.Close() // dropped: nothing removed

	// Through the same-site front end s2 (proxied, A5). The dropped
	// session above releases the maildrop lock when the server notices the
	// close; until then a login is refused (RFC 1939 exclusive access).
	deadline := time.Now().Add(5 * time.Second)
	for {
		p = dialPOP3(t, listen(c, "s2", "pop3"), false)
		p.stls()
		p.cmd("USER alice", "+OK")
		fmt.Fprintf(p.c, "PASS alice-pw\r\n")
		if l := p.line(""); strings.HasPrefix(l, "+OK") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxied login: %s", l)
		}
		p.c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	p.cmd("STAT", "+OK 2 ")
	// Which message is number 1 depends on delivery order: read it first.
	p.cmd("RETR 1", "+OK")
	var first strings.Builder
	for l := p.line(""); l != "."; l = p.line("") {
		first.WriteString(l + "\n")
	}
	keep := id2
	if strings.Contains(first.String(), id2) {
		keep = id1
	}
	p.cmd("DELE 1", "+OK")
	p.cmd("QUIT", "+OK")

	deadline = time.Now().Add(5 * time.Second)
	for {
		msgs, _ := c.Nodes["s1"].Store.Messages(t.Context(), mbox("s1-mbx", "alice"))
		if len(msgs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after DELE+QUIT the inbox holds %d messages, want 1", len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if findMessage(c.Nodes["s1"], mbox("s1-mbx", "alice"), keep) == nil {
		t.Error("the wrong message was deleted")
	}
}

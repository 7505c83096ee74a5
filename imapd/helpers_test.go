package imapd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/store"
)

// testOrg has two servers; s1's public store holds replicas of every
// folder but /Remote. Folder permissions cover the roles A8 names.
const testOrg = `organization: Test
domains: [test.example]
mode: native
sites:
  - name: site1
routing_groups:
  - name: rg1
servers:
  - name: s1
    site: site1
    routing_group: rg1
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s1-pub, kind: public, hierarchy: Public Folders, created: "2025-01-10T09:00:00Z"}
      - {name: s1-mbx, kind: mailbox, created: "2025-01-10T09:00:00Z"}
  - name: s2
    site: site1
    routing_group: rg1
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: s2-pub, kind: public, hierarchy: Public Folders, created: "2025-01-10T09:00:00Z"}
      - {name: s2-mbx, kind: mailbox, created: "2025-01-10T09:00:00Z"}
hierarchies:
  - {name: Public Folders, tlh: mapi}
folders:
  - {path: /Open, hierarchy: Public Folders, addresses: [open@test.example], replicas: [s1-pub]}
  - {path: /Open/Child, hierarchy: Public Folders, replicas: [s1-pub]}
  - {path: /Review, hierarchy: Public Folders, replicas: [s1-pub], permissions: {Default: Reviewer, alice: Owner}}
  - {path: /Drop, hierarchy: Public Folders, replicas: [s1-pub], permissions: {Default: Contributor}}
  - {path: /Secret, hierarchy: Public Folders, replicas: [s1-pub], permissions: {Default: None, alice: Owner}}
  - {path: /Remote, hierarchy: Public Folders, replicas: [s2-pub]}
  - {path: /Small, hierarchy: Public Folders, replicas: [s1-pub], max_message_size: 1KB}
users:
  - {name: alice, addresses: [alice@test.example], mailbox_store: s1-mbx, password: alice-pw}
  - {name: bob, addresses: [bob@test.example], mailbox_store: s1-mbx, password: bob-pw}
  - {name: carol, addresses: [carol@test.example], mailbox_store: s2-mbx, password: carol-pw}
`

type env struct {
	t     *testing.T
	dir   *directory.Directory
	store *store.Store
	srv   *Server
	addr  string
	data  string
	opts  Options     // extra server options (limits, spool directory)
	logs  *syncBuffer // the server's log
	// storeOpts: how the store is opened (zero: as the server does by default)
	storeOpts store.Options
}

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, Options{}) }

// newEnvWith starts a server with opts' limits and spool directory.
func newEnvWith(t *testing.T, opts Options) *env {
	t.Helper()
	return newEnvWithStore(t, opts, store.Options{})
}

// newEnvWithStore is newEnvWith with the store opened with so.
func newEnvWithStore(t *testing.T, opts Options, so store.Options) *env {
	t.Helper()
	org, err := config.Parse([]byte(testOrg), "org.yaml", ".")
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: d, data: t.TempDir(), opts: opts, storeOpts: so, logs: &syncBuffer{}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// start opens the store and serves IMAP with LOGIN on a fresh port.
func (e *env) start() {
	t := e.t
	st, err := store.OpenWith(e.data, quiet(), e.storeOpts)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.ServerName, opts.Directory, opts.Store = "s1", e.dir, st
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	check := func(user, pass string) error {
		u := e.dir.Snapshot().User(user)
		if u == nil || u.Password != pass {
			return errors.New("bad credentials")
		}
		return nil
	}
	go srv.ServeLogin(ln, check)
	e.store, e.srv, e.addr = st, srv, ln.Addr().String()
}

func (e *env) stop() {
	if e.srv != nil {
		e.srv.Close()
		e.store.Close()
		e.srv = nil
	}
}

// restart closes the server and the store and opens them again on the
// same data directory.
func (e *env) restart() {
	e.stop()
	e.start()
}

func (e *env) login(user string, opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, user+"-pw").Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

var seq = 0

func message(subject, body string) []byte {
	seq++
	return fmt.Appendf(nil, "From: Sender <sender@test.example>\r\nTo: alice@test.example\r\nSubject: %s\r\nDate: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m%d@test.example>\r\nContent-Type: text/plain\r\n\r\n%s\r\n", subject, seq, body)
}

func (e *env) deliver(user, subject, body string) uint32 {
	e.t.Helper()
	uid, _, err := e.store.Deliver(context.Background(), store.Delivery{Store: "s1-mbx", User: user, Class: "IPM.Note", Body: message(subject, body)})
	if err != nil {
		e.t.Fatal(err)
	}
	return uid
}

func (e *env) post(path, subject string) uint32 {
	e.t.Helper()
	uid, _, err := e.store.Deliver(context.Background(), store.Delivery{Store: "s1-pub", Folder: path, Class: "IPM.Post", Body: message(subject, "post body")})
	if err != nil {
		e.t.Fatal(err)
	}
	return uid
}

func fetchAll(t *testing.T, c *imapclient.Client, set imap.NumSet, opts *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return msgs
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if string(x) == string(f) {
			return true
		}
	}
	return false
}

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func storeRef(path string) store.MailboxRef { return store.MailboxRef{Store: "s1-pub", Name: path} }

func (e *env) dial() *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

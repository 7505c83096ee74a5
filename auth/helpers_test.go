package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"pfrouter/config"
	"pfrouter/directory"
)

// orgYAML is a three-server organization: ex1 and ex2 in site tokyo, ex3 in
// site berlin. %s slots: access block, extra users.
const orgYAML = `organization: T
domains: [x.example]
access: {%s}
sites: [{name: tokyo}, {name: berlin}]
routing_groups: [{name: a}, {name: b}]
connectors:
  - {name: ab, between: [a, b], cost: 10, bridgeheads: {a: [ex1], b: [ex3]}}
servers:
  - name: ex1
    site: tokyo
    routing_group: a
    listen: {smtp: "127.0.0.1:2501", imap: "127.0.0.1:1431", pop3: "127.0.0.1:1101"}
    stores: [{name: m1, kind: mailbox}]
  - name: ex2
    site: tokyo
    routing_group: a
    listen: {smtp: "127.0.0.1:2502", imap: "127.0.0.1:1432", pop3: "127.0.0.1:1102"}
    stores: [{name: m2, kind: mailbox}]
  - name: ex3
    site: berlin
    routing_group: b
    listen: {smtp: "127.0.0.1:2503", imap: "127.0.0.1:1433", pop3: "127.0.0.1:1103"}
    stores: [{name: m3, kind: mailbox}]
users:
  - {name: alice, addresses: [alice@x.example], mailbox_store: m1, password: alice-pw}
  - {name: dan, addresses: [dan@x.example], mailbox_store: m2, password: dan-pw}
  - {name: bob, addresses: [bob@x.example], mailbox_store: m3, password: bob-pw}
  - {name: carol, addresses: [carol@x.example], mailbox_store: m1, password: carol-pw, imap_enabled: false}
  - {name: pat, addresses: [pat@x.example], mailbox_store: m1, password: pat-pw, pop_enabled: false}
  - {name: guest, addresses: [guest@x.example], mailbox_store: m1, password: guest-pw, kind: guest}
  - {name: admin, addresses: [admin@x.example], mailbox_store: m1, password: admin-pw, kind: admin}
%s`

var (
	hashOnce sync.Once
	hashPW   string
)

// hashedUser is a user line with a bcrypt password_hash of "hash-pw".
func hashedUser(t testing.TB) string {
	hashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte("hash-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hashPW = string(h)
	})
	return fmt.Sprintf("  - {name: hashed, addresses: [hashed@x.example], mailbox_store: m1, password_hash: %q}\n", hashPW)
}

// newDir builds a directory from orgYAML; edits are old/new pairs applied
// to the text.
func newDir(t testing.TB, access, extraUsers string, edits ...string) *directory.Directory {
	t.Helper()
	text := fmt.Sprintf(orgYAML, access, extraUsers)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("edit %q does not apply", edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	org, err := config.Parse([]byte(text), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// logBuf is a concurrency-safe buffer for a slog text handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) lines(substr string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func newPolicy(t testing.TB, d *directory.Directory, loginType, crossSite string) (*Policy, *logBuf) {
	buf := &logBuf{}
	p := New(Options{
		Directory: d, ServerName: "ex1", LoginType: loginType, CrossSite: crossSite,
		Logger:       slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		FailureDelay: -1, MaxFailures: -1,
	})
	return p, buf
}

var client = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 40000}

func kindOf(err error) Kind {
	if e, ok := err.(*Error); ok {
		return e.Kind
	}
	return 0
}

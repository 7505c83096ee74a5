package bench

// "IMAP access" benchmarks (see README.md): pfrouter's IMAP access tier in
// process, driven by the bench/imapload client core. One organization
// holds alice's mailbox on s1 and a same-site front end s2 that proxies to
// s1 (SPEC A5), so BenchmarkIMAPFetchDirect and BenchmarkIMAPFetchProxied
// differ only by the proxy hop, and their ratio is the proxy overhead on
// one machine state. Both also measure logins.
//
//	go test ./bench/ -run '^$' -bench 'IMAP' -benchtime 20x

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"pfrouter/bench/imapload/load"
	"pfrouter/config"
	"pfrouter/node"
	"pfrouter/store"
)

// imapOrg: s1 holds alice's mailbox; s2 is a front end in the same site.
// PlainTextLogin, as in bench/scripts/imap.sh: the client side runs
// without TLS; the proxy hop s2 -> s1 always uses STARTTLS.
const imapOrg = `
organization: BenchIMAP
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
access: {cross_site: proxy, login_type: PlainTextLogin}
routing_groups: [{name: rg}]
sites: [{name: tokyo}]
servers:
  - {name: s1, site: tokyo, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: tokyo, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"}}
users:
  - {name: alice, addresses: [alice@contoso.example], mailbox_store: s1-mbx, password: alice-pw}
`

const (
	imapMessages = 1000
	imapMsgSize  = 8 << 10
)

// startIMAPOrg starts the organization and puts imapMessages messages in
// alice's INBOX straight through the store (the access tier is what is
// measured, not delivery).
func startIMAPOrg(b *testing.B) *node.Cluster {
	b.Helper()
	c := startBenchOrg(b, imapOrg)
	fillMailbox(b, c.Nodes["s1"].Store, store.Delivery{Store: "s1-mbx", User: "alice", Class: "IPM.Note"})
	return c
}

// startBenchOrg starts every server of an organization in process, quiet.
func startBenchOrg(b *testing.B, yaml string) *node.Cluster {
	b.Helper()
	org, err := config.Parse([]byte(yaml), "bench.yaml", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	c, err := node.StartAll(context.Background(), org, nil, node.Options{BaseDir: b.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// fillMailbox delivers imapMessages messages of imapMsgSize bytes like
// proto (its ID, Date and Body set per message) straight into a store.
func fillMailbox(b *testing.B, st *store.Store, proto store.Delivery) {
	b.Helper()
	msg := load.NewMessage(imapMsgSize, "alice@contoso.example")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < imapMessages; i += 8 {
				d := proto
				d.ID, d.Date, d.Body = fmt.Sprintf("bench-%d", i), time.Now(), msg.Build(i)
				if _, _, err := st.Deliver(context.Background(), d); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

func imapAddr(c *node.Cluster, server string) string {
	return c.Nodes[server].Org.ServerByName(server).Listen.IMAP
}

func BenchmarkIMAPFetchDirect(b *testing.B) { benchIMAP(b, "s1") }

func BenchmarkIMAPFetchProxied(b *testing.B) { benchIMAP(b, "s2") }

// benchIMAP measures, against server's IMAP listener: one LOGIN+LOGOUT on
// a fresh connection per op; one FETCH 1:* (BODY.PEEK[HEADER]) and one
// FETCH 1:* (BODY.PEEK[]) of the 1,000-message INBOX per op.
func benchIMAP(b *testing.B, server string) {
	c := startIMAPOrg(b)
	cfg := load.Config{Addr: imapAddr(c, server), User: "alice", Pass: "alice-pw", Timeout: time.Minute}
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			s, err := load.Dial(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			s.Deadline()
			if err := s.Logout().Wait(); err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
	})
	for _, bodies := range []bool{false, true} {
		name := "headers"
		if bodies {
			name = "bodies"
		}
		b.Run(name, func(b *testing.B) { benchFetchAll(b, cfg, "INBOX", bodies) })
	}
}

// benchFetchAll selects mailbox (imapMessages messages) on a fresh session
// and measures one FETCH 1:* of headers or whole bodies per op.
func benchFetchAll(b *testing.B, cfg load.Config, mailbox string, bodies bool) {
	s, err := load.Dial(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Deadline()
	sel, err := s.Select(mailbox, nil).Wait()
	if err != nil || sel.NumMessages != imapMessages {
		b.Fatalf("SELECT %s: %v (%d messages, want %d)", mailbox, err, sel.NumMessages, imapMessages)
	}
	var msgs, n int64
	for b.Loop() {
		s.Deadline()
		m, k, err := load.FetchAll(s.Client, bodies)
		if err != nil {
			b.Fatal(err)
		}
		if m != imapMessages {
			b.Fatalf("FETCH returned %d messages, want %d", m, imapMessages)
		}
		msgs, n = msgs+m, n+k
	}
	b.SetBytes(n / int64(b.N))
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

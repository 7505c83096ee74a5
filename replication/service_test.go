package replication

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/store"
)

// testPKI is a CA and a certificate per server, standing in for the org
// CA of package servercred at this seam (the Service takes TLS configs).
type testPKI struct {
	pool  *x509.CertPool
	certs map[string]tls.Certificate
}

func newPKI(t *testing.T, servers ...string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test org CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{pool: x509.NewCertPool(), certs: map[string]tls.Certificate{}}
	p.pool.AddCert(ca)
	for i, s := range servers {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: s}, DNSNames: []string{s},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		p.certs[s] = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return p
}

func (p *testPKI) server(name string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.certs[name]}, ClientCAs: p.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
}

func (p *testPKI) client(self string) func(string) *tls.Config {
	return func(peer string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{p.certs[self]}, RootCAs: p.pool, ServerName: peer, MinVersion: tls.VersionTLS13}
	}
}

func peerCN(cs tls.ConnectionState) (string, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	return cs.PeerCertificates[0].Subject.CommonName, true
}

const twoServers = `
organization: T
domains: [t.example]
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - name: a
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}, {name: a-pub2, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: b
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: b-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: c
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: c-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: PF, replicas: [a-pub, b-pub, a-pub2]}
  - {path: /Only, hierarchy: PF, replicas: [a-pub]}
  - {path: /AC, hierarchy: PF, replicas: [a-pub, c-pub]}
`

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type testServer struct {
	name string
	st   *store.Store
	svc  *Service
	dir  *directory.Directory
}

// startServers runs a Service per server over real TLS on 127.0.0.1.
func startServers(t *testing.T, yaml string, names ...string) map[string]*testServer {
	t.Helper()
	return startServersWith(t, yaml, nil, names...)
}

// startServersWith is startServers with each server's Options changed by
// tweak (nil: none) before its Service starts.
func startServersWith(t *testing.T, yaml string, tweak func(server string, o *Options), names ...string) map[string]*testServer {
	t.Helper()
	org, err := config.Parse([]byte(yaml), "t.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t, append(names, "intruder")...)
	ls := map[string]net.Listener{}
	for _, n := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[n] = l
		org.ServerByName(n).Listen.Replication = l.Addr().String()
	}
	out := map[string]*testServer{}
	for _, n := range names {
		dir, err := directory.New(org, directory.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(t.TempDir(), quiet())
		if err != nil {
			t.Fatal(err)
		}
		o := Options{Server: n, Directory: dir, Store: st, Logger: quiet(), ServerTLS: pki.server(n),
			ClientTLS: pki.client(n), PeerServer: peerCN, MaxBatchBytes: 64 << 10}
		if tweak != nil {
			tweak(n, &o)
		}
		svc := New(o)
		go svc.Serve(ls[n])
		svc.Start()
		out[n] = &testServer{name: n, st: st, svc: svc, dir: dir}
		t.Cleanup(func() { svc.Close(); st.Close() })
	}
	return out
}

// digests maps Message-ID-free identity (item) to a body digest.
func digests(t *testing.T, st *store.Store, ref store.MailboxRef) map[store.ChangeID][32]byte {
	t.Helper()
	items, err := st.ItemsOf(context.Background(), ref)
	if err != nil {
		return nil
	}
	out := map[store.ChangeID][32]byte{}
	for uid, item := range items {
		b, err := st.Body(context.Background(), ref, uid)
		if err != nil {
			t.Fatal(err)
		}
		out[item] = sha256.Sum256(b)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Posts made in any replica reach every other (over TLS between servers,
// and between two stores of one server), in batches under
// max_batch_bytes, and each replica holds each post once.
func TestPostsReachEveryReplica(t *testing.T) {
	srv := startServers(t, twoServers, "a", "b", "c")
	ctx := context.Background()
	post := func(s *testServer, st string, i int) {
		body := fmt.Appendf(nil, "Message-ID: <%s-%d@t>\r\nSubject: p\r\n\r\n%s", st, i, bytes.Repeat([]byte("x"), 10<<10))
		if _, _, err := s.st.Deliver(ctx, store.Delivery{Store: st, Folder: "/Sales", ID: fmt.Sprint(st, i), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		post(srv["a"], "a-pub", i)
		post(srv["b"], "b-pub", i)
	}
	refs := []struct {
		s   *testServer
		ref store.MailboxRef
	}{{srv["a"], store.MailboxRef{Store: "a-pub", Name: "/Sales"}}, {srv["b"], store.MailboxRef{Store: "b-pub", Name: "/Sales"}},
		{srv["a"], store.MailboxRef{Store: "a-pub2", Name: "/Sales"}}}
	waitFor(t, "every replica to hold 40 posts", func() bool {
		for _, r := range refs {
			if len(digests(t, r.s.st, r.ref)) != 40 {
				return false
			}
		}
		return true
	})
	want := digests(t, refs[0].s.st, refs[0].ref)
	for _, r := range refs {
		got := digests(t, r.s.st, r.ref)
		if !maps.Equal(got, want) {
			t.Fatalf("%s differs from a-pub", r.ref)
		}
		msgs, _ := r.s.st.Messages(ctx, r.ref)
		if len(msgs) != 40 {
			t.Fatalf("%s holds %d messages, want 40 (a post twice?)", r.ref, len(msgs))
		}
	}
	// /Only has one replica and c holds nothing of /Sales.
	if srv["c"].st.MailboxExists(ctx, store.MailboxRef{Store: "c-pub", Name: "/Sales"}) {
		t.Fatal("c-pub got /Sales, which it does not replicate")
	}
}

// A server may pull only folders it replicates, and only a client with a
// certificate of the organization is answered.
func TestPullRefusedForStrangers(t *testing.T) {
	srv := startServers(t, twoServers, "a", "b", "c")
	ctx := context.Background()
	srv["a"].st.Deliver(ctx, store.Delivery{Store: "a-pub", Folder: "/Sales", ID: "1", Body: []byte("Subject: s\r\n\r\nsecret\r\n")})
	// c replicates /AC with a but not /Sales: its request for /Sales is refused.
	cc, err := srv["c"].svc.dial(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.c.Close()
	resp, err := cc.exchange(ctx, &pullRequest{MaxBytes: 1 << 20, Folders: []pullFolder{{Hierarchy: "PF", Path: "/Sales", Source: "a-pub"}}}, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Folders[0].Error == "" || len(resp.Folders[0].Changes) != 0 {
		t.Fatalf("c read /Sales: %+v", resp.Folders[0])
	}
	// No client certificate: the handshake fails, nothing is served.
	addr := srv["a"].dir.Snapshot().Server("a").Listen.Replication
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		writeJSON(conn, &pullRequest{Folders: []pullFolder{{Hierarchy: "PF", Path: "/Sales", Source: "a-pub"}}})
		var n [1]byte
		if _, err := conn.Read(n[:]); err == nil {
			t.Fatal("a server answered a client without an org certificate")
		}
		conn.Close()
	}
}

// A connector marked down partitions replication at once (issue 12,
// partition test): a long poll already waiting at the source when the
// link goes down must not carry a post made afterwards, whichever side
// notices first; when the link is back the post arrives.
func TestPartitionStopsPendingPoll(t *testing.T) {
	for _, side := range []string{"puller", "source"} {
		t.Run(side+" sees the partition", func(t *testing.T) {
			var linkUp atomic.Bool
			linkUp.Store(true)
			srv := startServersWith(t, twoServers, func(server string, o *Options) {
				if (side == "puller") == (server == "b") {
					o.Reachable = func(string) bool { return linkUp.Load() }
				}
			}, "a", "b")
			ctx := context.Background()
			post := func(i int) {
				body := fmt.Appendf(nil, "Message-ID: <p%d@t>\r\nSubject: p\r\n\r\nbody %d\r\n", i, i)
				if _, _, err := srv["a"].st.Deliver(ctx, store.Delivery{Store: "a-pub", Folder: "/Sales", ID: fmt.Sprint(i), Class: "IPM.Post", Body: body}); err != nil {
					t.Fatal(err)
				}
			}
			b := store.MailboxRef{Store: "b-pub", Name: "/Sales"}
			post(1)
			waitFor(t, "b-pub to hold the first post", func() bool { return len(digests(t, srv["b"].st, b)) == 1 })
			// b's pull loop now waits in a long poll at a.
			time.Sleep(200 * time.Millisecond)
			linkUp.Store(false)
			post(2)
			time.Sleep(1500 * time.Millisecond) // give a leak through the pending poll a chance
			if n := len(digests(t, srv["b"].st, b)); n != 1 {
				t.Fatalf("b-pub holds %d posts while partitioned, want 1", n)
			}
			linkUp.Store(true)
			waitFor(t, "b-pub to hold both posts after the partition", func() bool { return len(digests(t, srv["b"].st, b)) == 2 })
		})
	}
}

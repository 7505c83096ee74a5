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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"strings"
	"sync"
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
		if errors.Is(err, store.ErrNoMessage) {
			continue // expunged by replication between the listing and this read
		}
		if err != nil {
			t.Fatal(err)
		}
		out[item] = sha256.Sum256(b)
	}
	return out
}

// waitCompacted waits until everything ref holds is acknowledged and
// compacted (its horizon covers its CN set).
func waitCompacted(t *testing.T, what string, st *store.Store, ref store.MailboxRef) {
	t.Helper()
	waitFor(t, what, func() bool {
		h, err := st.Horizon(context.Background(), ref)
		if err != nil || len(h) == 0 {
			return false
		}
		k, _ := st.CNSetOf(context.Background(), ref)
		return len(k.Minus(h)) == 0
	})
}

// deliverPosts delivers n posts into folder of store st, with Message-IDs
// <prefix0@t>... and delivery ids prefix0...
func deliverPosts(t *testing.T, s *store.Store, st, folder, prefix string, n int) {
	t.Helper()
	for i := range n {
		body := fmt.Appendf(nil, "Message-ID: <%s%d@t>\r\nSubject: p\r\n\r\nbody %d\r\n", prefix, i, i)
		if _, _, err := s.Deliver(context.Background(), store.Delivery{Store: st, Folder: folder, ID: fmt.Sprint(prefix, i), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
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

// Issue 12 (hierarchy replication): a folder renamed at run time is
// renamed in every replica, content and change history kept, and goes on
// replicating under its new name; a folder deleted is deleted in every
// replica, and a server that has not heard of the delete yet (gossip
// partitioned) neither brings it back elsewhere nor loses it before it
// hears. The directories change here as gossip would change them.
func TestFolderRenameAndDeleteReachEveryReplica(t *testing.T) {
	srv := startServers(t, twoServers, "a", "b")
	ctx := context.Background()
	id := directory.FolderKey("PF", "/Sales")
	n := 0
	post := func(s *testServer, st, folder string) {
		n++
		body := fmt.Appendf(nil, "Message-ID: <f%d@t>\r\nSubject: p\r\n\r\nbody %d\r\n", n, n)
		if _, _, err := s.st.Deliver(ctx, store.Delivery{Store: st, Folder: folder, ID: fmt.Sprint("f", n), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	replicas := func(folder string) []struct {
		s   *testServer
		ref store.MailboxRef
	} {
		return []struct {
			s   *testServer
			ref store.MailboxRef
		}{{srv["a"], store.MailboxRef{Store: "a-pub", Name: folder}}, {srv["b"], store.MailboxRef{Store: "b-pub", Name: folder}},
			{srv["a"], store.MailboxRef{Store: "a-pub2", Name: folder}}}
	}
	holdAll := func(folder string, want int) func() bool {
		return func() bool {
			for _, r := range replicas(folder) {
				if len(digests(t, r.s.st, r.ref)) != want {
					return false
				}
			}
			return true
		}
	}
	for range 3 {
		post(srv["a"], "a-pub", "/Sales")
	}
	waitFor(t, "every replica to hold 3 posts", holdAll("/Sales", 3))
	before := digests(t, srv["b"].st, store.MailboxRef{Store: "b-pub", Name: "/Sales"})

	for _, s := range srv {
		if err := s.dir.RenameFolders(map[string]string{id: "/Revenue"}, directory.Rev{Version: 1, Origin: "a"}); err != nil {
			t.Fatal(err)
		}
		s.svc.Kick()
	}
	waitFor(t, "every replica renamed to /Revenue", func() bool {
		for _, r := range replicas("/Sales") {
			if r.s.st.MailboxExists(ctx, r.ref) {
				return false
			}
		}
		return holdAll("/Revenue", 3)()
	})
	for _, r := range replicas("/Revenue") {
		if got := digests(t, r.s.st, r.ref); !maps.Equal(got, before) {
			t.Fatalf("%s after the rename holds other posts than before", r.ref)
		}
	}
	post(srv["b"], "b-pub", "/Revenue")
	waitFor(t, "a post under the new name to reach every replica", holdAll("/Revenue", 4))

	// a hears of the delete; b does not yet, and takes one more post.
	if err := srv["a"].dir.DeleteFolders([]string{id}); err != nil {
		t.Fatal(err)
	}
	srv["a"].svc.Kick()
	post(srv["b"], "b-pub", "/Revenue")
	waitFor(t, "a's replicas deleted", func() bool {
		return !srv["a"].st.MailboxExists(ctx, store.MailboxRef{Store: "a-pub", Name: "/Revenue"}) &&
			!srv["a"].st.MailboxExists(ctx, store.MailboxRef{Store: "a-pub2", Name: "/Revenue"})
	})
	time.Sleep(1500 * time.Millisecond) // give a resurrection by b's pulls or a late answer a chance
	for _, st := range []string{"a-pub", "a-pub2"} {
		if srv["a"].st.MailboxExists(ctx, store.MailboxRef{Store: st, Name: "/Revenue"}) {
			t.Fatalf("%s holds /Revenue again after its delete", st)
		}
	}
	if got := len(digests(t, srv["b"].st, store.MailboxRef{Store: "b-pub", Name: "/Revenue"})); got != 5 {
		t.Fatalf("b-pub holds %d posts before it hears of the delete, want 5", got)
	}
	if err := srv["b"].dir.DeleteFolders([]string{id}); err != nil {
		t.Fatal(err)
	}
	srv["b"].svc.Kick()
	waitFor(t, "b's replica deleted once b hears of it", func() bool {
		return !srv["b"].st.MailboxExists(ctx, store.MailboxRef{Store: "b-pub", Name: "/Revenue"})
	})
}

// Issue 12, compaction: each server compacts its replicas' logs by what
// every other replica acknowledged with its pulls; a replica added later
// (its empty CN set does not cover the horizon) is resynced over the wire
// and holds exactly what the others hold, deleted posts included out.
func TestCompactionThenNewReplicaResyncs(t *testing.T) {
	srv := startServersWith(t, twoServers, func(_ string, o *Options) { o.CompactEvery = 200 * time.Millisecond }, "a", "b", "c")
	ctx := context.Background()
	ra := store.MailboxRef{Store: "a-pub", Name: "/Sales"}
	deliverPosts(t, srv["a"].st, "a-pub", "/Sales", "c", 6)
	msgs, _ := srv["a"].st.Messages(ctx, ra)
	if _, err := srv["a"].st.Expunge(ctx, ra, []uint32{msgs[0].UID, msgs[1].UID}); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, "a-pub's log compacted past the deletes", srv["a"].st, ra)
	for _, s := range srv {
		if err := s.dir.AddReplica("PF", "/Sales", "c-pub"); err != nil {
			t.Fatal(err)
		}
		s.svc.Kick()
	}
	rc := store.MailboxRef{Store: "c-pub", Name: "/Sales"}
	want := digests(t, srv["a"].st, ra)
	waitFor(t, "the new replica to hold what a-pub holds", func() bool {
		return maps.Equal(digests(t, srv["c"].st, rc), want)
	})
	if len(want) != 4 {
		t.Fatalf("a-pub holds %d posts, want 4", len(want))
	}
}

const scheduled = `
organization: T
domains: [t.example]
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - name: a
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: b
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: b-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: PF, replicas: [a-pub, b-pub]}
  - {path: /Slow, hierarchy: PF, replicas: [a-pub, b-pub], replication: {interval: 1h}}
  - {path: /Small, hierarchy: PF, replicas: [a-pub, b-pub], replication: {max_batch_bytes: 64KB}}
`

// Issue 12, per-folder schedule: a folder with a 1-hour interval does not
// replicate a post in the next seconds while a default folder (at once)
// does; a folder's max_batch_bytes bounds its batches; a reload that
// changes a folder's schedule takes effect without a restart.
func TestFolderSchedule(t *testing.T) {
	var mu sync.Mutex
	var small []Applied
	srv := startServersWith(t, scheduled, func(server string, o *Options) {
		o.MaxBatchBytes = 4 << 20 // the organization's: only /Small's own bound can cut its batches
		o.Schedule = func(f *directory.Folder) Schedule {
			r := o.Directory.Org().FolderReplication(f.Replication)
			return Schedule{Interval: time.Duration(r.Interval), MaxBatchBytes: int(r.MaxBatchBytes)}
		}
		if server == "b" {
			o.OnApplied = func(a Applied) {
				if a.Pair.Path == "/Small" {
					mu.Lock()
					small = append(small, a)
					mu.Unlock()
				}
			}
		}
	}, "a", "b")
	ctx := context.Background()
	n := 0
	post := func(folder string, size int) {
		n++
		body := fmt.Appendf(nil, "Message-ID: <s%d@t>\r\nSubject: p\r\n\r\n%s", n, bytes.Repeat([]byte("x"), size))
		if _, _, err := srv["a"].st.Deliver(ctx, store.Delivery{Store: "a-pub", Folder: folder, ID: fmt.Sprint("s", n), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	at := func(folder string) int {
		return len(digests(t, srv["b"].st, store.MailboxRef{Store: "b-pub", Name: folder}))
	}
	// The first pull of every folder is behind us once a default one
	// delivered: /Slow's next is an hour away.
	post("/Sales", 10)
	waitFor(t, "the first /Sales post at b", func() bool { return at("/Sales") == 1 })
	post("/Slow", 10)
	post("/Sales", 10)
	waitFor(t, "the second /Sales post at b", func() bool { return at("/Sales") == 2 })
	time.Sleep(1500 * time.Millisecond) // give /Slow a chance to be early
	if got := at("/Slow"); got != 0 {
		t.Fatalf("b-pub holds %d /Slow posts seconds after the post, want 0 (interval 1h)", got)
	}
	// max_batch_bytes 64KB: 40KB posts travel one per batch.
	for range 4 {
		post("/Small", 40<<10)
	}
	waitFor(t, "the /Small posts at b", func() bool { return at("/Small") == 4 })
	mu.Lock()
	cut := false
	for _, a := range small {
		if a.Result.Added > 1 {
			t.Fatalf("a /Small batch added %d posts of 40KB, max_batch_bytes 64KB allows 1", a.Result.Added)
		}
		cut = cut || a.More
	}
	mu.Unlock()
	if !cut {
		t.Fatal("no /Small batch was cut by max_batch_bytes")
	}
	// Reload: /Slow loses its interval on b, the puller; its post arrives.
	org, err := config.Parse([]byte(strings.Replace(scheduled, ", replication: {interval: 1h}", "", 1)), "t.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	org.ServerByName("a").Listen.Replication = srv["b"].dir.Org().ServerByName("a").Listen.Replication
	org.ServerByName("b").Listen.Replication = srv["b"].dir.Org().ServerByName("b").Listen.Replication
	fresh, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv["b"].dir.Replace(fresh)
	srv["b"].svc.Kick()
	waitFor(t, "the /Slow post at b after the reload", func() bool { return at("/Slow") == 1 })
}

// Issue 12 item 7 (conflicts), over the wire: while a connector is down,
// both replicas change the same user's flags on the same post, and one
// side deletes another post the other side flags; when the link is back
// both hold the same state by the documented rule (later change wins per
// user and post; delete wins).
func TestPartitionedFlagConflictsConverge(t *testing.T) {
	var linkUp atomic.Bool
	linkUp.Store(true)
	srv := startServersWith(t, scheduled, func(_ string, o *Options) {
		o.Reachable = func(string) bool { return linkUp.Load() }
	}, "a", "b")
	ctx := context.Background()
	ra, rb := store.MailboxRef{Store: "a-pub", Name: "/Sales"}, store.MailboxRef{Store: "b-pub", Name: "/Sales"}
	deliverPosts(t, srv["a"].st, "a-pub", "/Sales", "k", 2)
	waitFor(t, "b-pub to hold both posts", func() bool { return len(digests(t, srv["b"].st, rb)) == 2 })
	linkUp.Store(false)
	time.Sleep(300 * time.Millisecond)
	am, _ := srv["a"].st.Messages(ctx, ra)
	bm, _ := srv["b"].st.Messages(ctx, rb)
	srv["a"].st.SetFlags(ctx, ra, "u", []uint32{am[0].UID}, store.FlagsSet, []string{"$FromA"})
	time.Sleep(5 * time.Millisecond) // b's change is the later one
	srv["b"].st.SetFlags(ctx, rb, "u", []uint32{bm[0].UID}, store.FlagsSet, []string{"$FromB"})
	srv["b"].st.SetFlags(ctx, rb, "u", []uint32{bm[1].UID}, store.FlagsSet, []string{`\Flagged`})
	srv["a"].st.Expunge(ctx, ra, []uint32{am[1].UID})
	linkUp.Store(true)
	state := func(s *testServer, ref store.MailboxRef) string {
		ms, _ := s.st.MessagesAs(ctx, ref, "u")
		out := fmt.Sprint(len(ms))
		for _, m := range ms {
			out += fmt.Sprint(" ", m.Flags)
		}
		return out
	}
	waitFor(t, "both replicas to converge on one post flagged $FromB", func() bool {
		return state(srv["a"], ra) == "1 [$FromB]" && state(srv["b"], rb) == "1 [$FromB]"
	})
}

// Issue 12 (replication.compact_every): the compaction interval is read
// from the configuration in force before every pass, so a reload that
// shortens it compacts within a second of it, not after the old interval.
func TestCompactionIntervalFollowsReload(t *testing.T) {
	var every atomic.Int64
	every.Store(int64(time.Hour))
	srv := startServersWith(t, twoServers, func(_ string, o *Options) {
		o.CompactInterval = func() time.Duration { return time.Duration(every.Load()) }
	}, "a", "b")
	ctx := context.Background()
	ra := store.MailboxRef{Store: "a-pub", Name: "/Sales"}
	deliverPosts(t, srv["a"].st, "a-pub", "/Sales", "i", 3)
	msgs, _ := srv["a"].st.Messages(ctx, ra)
	if _, err := srv["a"].st.Expunge(ctx, ra, []uint32{msgs[0].UID}); err != nil {
		t.Fatal(err)
	}
	want := digests(t, srv["a"].st, ra)
	rb := store.MailboxRef{Store: "b-pub", Name: "/Sales"}
	waitFor(t, "b-pub and a-pub2 to hold what a-pub holds", func() bool {
		return maps.Equal(digests(t, srv["b"].st, rb), want) &&
			maps.Equal(digests(t, srv["a"].st, store.MailboxRef{Store: "a-pub2", Name: "/Sales"}), want)
	})
	if h, err := srv["a"].st.Horizon(ctx, ra); err != nil || len(h) != 0 {
		t.Fatalf("compacted under a 1h interval: horizon %v, %v", h, err)
	}
	every.Store(int64(100 * time.Millisecond)) // the reload
	waitFor(t, "a-pub's log compacted after the interval was shortened", func() bool {
		h, err := srv["a"].st.Horizon(ctx, ra)
		return err == nil && len(h) > 0
	})
}

// Issue 12 (resync in pages): a replica added to a folder whose log was
// compacted resyncs from each source in pages of at most ResyncPage log
// entries (shrunk to 3 here: a folder large enough to need many pages),
// never one frame for the whole folder, and ends holding what the others
// hold.
func TestResyncInPagesOverTheWire(t *testing.T) {
	srv := startServersWith(t, twoServers, func(_ string, o *Options) {
		o.CompactEvery = 200 * time.Millisecond
		o.ResyncPage = 3
	}, "a", "b", "c")
	ctx := context.Background()
	ra := store.MailboxRef{Store: "a-pub", Name: "/Sales"}
	const posts = 24
	deliverPosts(t, srv["a"].st, "a-pub", "/Sales", "g", posts)
	msgs, _ := srv["a"].st.Messages(ctx, ra)
	var gone []uint32
	for i := 0; i < posts; i += 4 {
		gone = append(gone, msgs[i].UID)
	}
	if _, err := srv["a"].st.Expunge(ctx, ra, gone); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, "a-pub's log compacted past the deletes", srv["a"].st, ra)
	// b-pub too: else the new replica may take every post from b-pub's
	// uncompacted log by ordinary pulls, and hold everything while a-pub's
	// resync is still in its first pages.
	rbp := store.MailboxRef{Store: "b-pub", Name: "/Sales"}
	waitFor(t, "b-pub to hold what a-pub holds", func() bool {
		return maps.Equal(digests(t, srv["b"].st, rbp), digests(t, srv["a"].st, ra))
	})
	waitCompacted(t, "b-pub's log compacted past the deletes", srv["b"].st, rbp)
	for _, s := range srv {
		if err := s.dir.AddReplica("PF", "/Sales", "c-pub"); err != nil {
			t.Fatal(err)
		}
		s.svc.Kick()
	}
	rc := store.MailboxRef{Store: "c-pub", Name: "/Sales"}
	want := digests(t, srv["a"].st, ra)
	waitFor(t, "the new replica to hold what a-pub holds", func() bool {
		return maps.Equal(digests(t, srv["c"].st, rc), want)
	})
	if len(want) != posts-len(gone) {
		t.Fatalf("a-pub holds %d posts, want %d", len(want), posts-len(gone))
	}
	if n := srv["c"].svc.resyncPages.Load(); n < int64((posts-len(gone))/3) {
		t.Fatalf("the resync took %d pages, want at least %d (3 log entries each)", n, (posts-len(gone))/3)
	}
}

// Issue 12 (a silent replica holds compaction back): with a silence limit,
// a replica that has not pulled for longer no longer holds its folder's
// compaction back, so the log is compacted past changes it lacks; when it
// comes back it resyncs, deletes what was deleted meanwhile, and holds
// exactly what the others hold.
func TestSilentReplicaStopsHoldingCompaction(t *testing.T) {
	var linkUp atomic.Bool
	linkUp.Store(true)
	srv := startServersWith(t, twoServers, func(_ string, o *Options) {
		o.CompactEvery = 100 * time.Millisecond
		o.SilenceLimit = func() time.Duration { return 300 * time.Millisecond }
		o.Reachable = func(string) bool { return linkUp.Load() }
	}, "a", "c")
	ctx := context.Background()
	ra, rc := store.MailboxRef{Store: "a-pub", Name: "/AC"}, store.MailboxRef{Store: "c-pub", Name: "/AC"}
	deliverPosts(t, srv["a"].st, "a-pub", "/AC", "s", 6)
	waitFor(t, "c-pub to hold the posts", func() bool { return len(digests(t, srv["c"].st, rc)) == 6 })
	linkUp.Store(false)
	msgs, _ := srv["a"].st.Messages(ctx, ra)
	if _, err := srv["a"].st.Expunge(ctx, ra, []uint32{msgs[0].UID, msgs[3].UID}); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, "a-pub's log compacted past the deletes c-pub never acknowledged", srv["a"].st, ra)
	if n := len(digests(t, srv["c"].st, rc)); n != 6 {
		t.Fatalf("c-pub holds %d posts while partitioned, want its 6", n)
	}
	linkUp.Store(true)
	want := digests(t, srv["a"].st, ra)
	waitFor(t, "c-pub to resync and hold what a-pub holds", func() bool {
		return maps.Equal(digests(t, srv["c"].st, rc), want)
	})
	if len(want) != 4 || srv["c"].svc.resyncPages.Load() == 0 {
		t.Fatalf("a-pub holds %d posts (want 4); c resynced in %d pages (want a resync)", len(want), srv["c"].svc.resyncPages.Load())
	}
}

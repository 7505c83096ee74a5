package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/replication"
	"pfrouter/servercred"
	"pfrouter/store"
)

// Replication benchmarks (issue 12), in one process over real TLS on
// 127.0.0.1 with the org's server certificates and real badger stores:
// one replication.Service per server, as node wires it.

const replOrgYAML = `
organization: B
domains: [b.example]
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - {name: a, site: one, routing_group: rg, listen: {smtp: "127.0.0.1:0"}, stores: [{name: a-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: b, site: one, routing_group: rg, listen: {smtp: "127.0.0.1:0"}, stores: [{name: b-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: c, site: one, routing_group: rg, listen: {smtp: "127.0.0.1:0"}, stores: [{name: c-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /F, hierarchy: PF, replicas: [%s]}
`

type benchServer struct {
	st  *store.Store
	svc *replication.Service
}

// startReplicas runs servers names with /F replicated on stores reps;
// onApplied sees every applied batch.
func startReplicas(b *testing.B, reps string, names []string, stores map[string]*store.Store, onApplied func(replication.Applied)) map[string]*benchServer {
	org, err := config.Parse([]byte(fmt.Sprintf(replOrgYAML, reps)), "b.yaml", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ca, err := servercred.New("bench-secret-0123456789-0123456789-0123456789")
	if err != nil {
		b.Fatal(err)
	}
	ls := map[string]net.Listener{}
	for _, n := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ls[n] = l
		org.ServerByName(n).Listen.Replication = l.Addr().String()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := map[string]*benchServer{}
	for _, n := range names {
		dir, err := directory.New(org, directory.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st := stores[n]
		if st == nil {
			if st, err = store.Open(b.TempDir(), quiet); err != nil {
				b.Fatal(err)
			}
		}
		id, err := ca.Identity(n)
		if err != nil {
			b.Fatal(err)
		}
		svc := replication.New(replication.Options{Server: n, Directory: dir, Store: st, Logger: quiet,
			ServerTLS: id.ServerTLS(), ClientTLS: id.ClientTLS, PeerServer: servercred.PeerServer, OnApplied: onApplied})
		go svc.Serve(ls[n])
		svc.Start()
		out[n] = &benchServer{st: st, svc: svc}
	}
	return out
}

func closeAll(srv map[string]*benchServer) {
	for _, s := range srv {
		s.svc.Close()
		s.st.Close()
	}
}

func post(i int, size int) []byte {
	return fmt.Appendf(nil, "Message-Id: <p%d@b>\r\nSubject: post %d\r\n\r\n%s\r\n", i, i, make([]byte, size))
}

// Replication lag: posts into a-pub at `rate` per second; every post must
// reach b-pub and c-pub. Lag is the time from a post's commit in a-pub to
// its commit in the other replica (the store's Change.At, same clock).
func BenchmarkReplicationLag(b *testing.B) {
	const rate, posts = 500, 2500
	run := func(b *testing.B, reps string, names []string) (p50, p99 time.Duration) {
		var mu sync.Mutex
		var lags []time.Duration
		srv := startReplicas(b, reps, names, nil, func(a replication.Applied) {
			mu.Lock()
			lags = append(lags, a.Lag...)
			mu.Unlock()
		})
		defer closeAll(srv)
		want := posts * (len(names) - 1)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		var wg sync.WaitGroup
		for i := range posts {
			<-tick.C
			wg.Go(func() {
				if _, _, err := srv["a"].st.Deliver(context.Background(), store.Delivery{Store: "a-pub", Folder: "/F", ID: fmt.Sprint(i), Body: post(i, 2000)}); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			n := len(lags)
			mu.Unlock()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d posts replicated", n, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		slices.Sort(lags)
		return lags[len(lags)/2], lags[len(lags)*99/100]
	}
	for b.Loop() {
		p50, p99 := run(b, "a-pub, b-pub, c-pub", []string{"a", "b", "c"})
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

// Backfill: a new replica b-pub pulls a folder of `posts` posts of 2 KB
// from a-pub. Baseline in the same run: storing the same posts into a-pub
// (concurrent deliveries, group commit). Peak heap is sampled every 10 ms.
func BenchmarkReplicationBackfill(b *testing.B) {
	const posts = 20000
	for b.Loop() {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		src, err := store.Open(b.TempDir(), quiet)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range posts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, _, err := src.Deliver(context.Background(), store.Delivery{Store: "a-pub", Folder: "/F", ID: fmt.Sprint(i), Body: post(i, 2000)}); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		local := time.Since(t0)
		var peak uint64
		stop := make(chan struct{})
		go func() {
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}()
		t1 := time.Now()
		srv := startReplicas(b, "a-pub, b-pub", []string{"a", "b"}, map[string]*store.Store{"a": src}, nil)
		ref := store.MailboxRef{Store: "b-pub", Name: "/F"}
		for {
			st, err := srv["b"].st.Status(context.Background(), ref)
			if err == nil && st.Messages == posts {
				break
			}
			if time.Since(t1) > 5*time.Minute {
				b.Fatalf("backfill incomplete: %d of %d", st.Messages, posts)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(t1)
		close(stop)
		closeAll(srv)
		b.ReportMetric(posts/took.Seconds(), "backfill-msgs/s")
		b.ReportMetric(posts/local.Seconds(), "local-deliver-msgs/s")
		b.ReportMetric(local.Seconds()/took.Seconds(), "backfill/local")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	}
}

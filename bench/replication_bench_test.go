package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/node"
	"pfrouter/replication"
	"pfrouter/servercred"
	"pfrouter/store"
)

// Replication benchmarks (issue 12), in one process over real TLS on
// 127.0.0.1 with the org's server certificates and real badger stores:
// one replication.Service per server, as node wires it.

// replOrgYAML: three servers, each in its own routing group, joined by
// connectors (a-b, b-c): every replica of /F is across a connector from
// the others. All connectors are up, so link state lets every pull
// through (Reachable nil).
const replOrgYAML = `
organization: B
domains: [b.example]
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10}
  - {name: bc, between: [rg-b, rg-c], cost: 10}
servers:
  - {name: a, site: one, routing_group: rg-a, listen: {smtp: "127.0.0.1:0"}, stores: [{name: a-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: b, site: one, routing_group: rg-b, listen: {smtp: "127.0.0.1:0"}, stores: [{name: b-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: c, site: one, routing_group: rg-c, listen: {smtp: "127.0.0.1:0"}, stores: [{name: c-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
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

// Backfill: a new replica b-pub pulls a folder of posts of 2 KB from a-pub
// (PFBENCH_BACKFILL_POSTS, default 100,000, the folder). Baseline in
// the same run: storing the same posts into a-pub (64 concurrent
// deliveries, group commit). The end is seen from the applied batches (no
// polling of the replica, which would cost the backfill CPU), then checked
// once. Memory: peak heap in use sampled every 10 ms, and the process's
// peak RSS during the backfill (Linux: VmHWM after clear_refs). With
// PFBENCH_BACKFILL_CPUPROFILE=file the backfill alone is profiled;
// PFBENCH_BACKFILL_MEMPROFILE=file writes the heap at its end,
// PFBENCH_BACKFILL_PEAKPROFILE=file the heap live at its peak. The Go heap's
// soft limit is what `pfrouter serve` sets for two servers
// (limits.memory_per_server's default); GOMEMLIMIT=off runs without one.
func BenchmarkReplicationBackfill(b *testing.B) {
	posts := envInt(b, "PFBENCH_BACKFILL_POSTS", 100000)
	prevLimit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prevLimit)
	limit := node.ApplyMemoryLimit(&config.Org{}, 2, os.Getenv)
	for b.Loop() {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		src, err := store.Open(b.TempDir(), quiet)
		if err != nil {
			b.Fatal(err)
		}
		t0, c0, w0 := time.Now(), cpuTime(), diskWritten()
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
		local, localCPU, localDisk := time.Since(t0), cpuTime()-c0, diskWritten()-w0
		runtime.GC()
		peak := newMemPeakProfile(os.Getenv("PFBENCH_BACKFILL_PEAKPROFILE"))
		stopProfile := profileIf(b, "PFBENCH_BACKFILL_CPUPROFILE")
		var stored atomic.Int64
		done := make(chan struct{})
		t1, c1, w1 := time.Now(), cpuTime(), diskWritten()
		srv := startReplicas(b, "a-pub, b-pub", []string{"a", "b"}, map[string]*store.Store{"a": src}, func(a replication.Applied) {
			if stored.Add(int64(a.Result.Added+a.Result.Skipped)) == int64(posts) {
				close(done)
			}
		})
		select {
		case <-done:
		case <-time.After(10 * time.Minute):
			b.Fatalf("backfill incomplete after 10 minutes: %d of %d", stored.Load(), posts)
		}
		took, tookCPU, tookDisk := time.Since(t1), cpuTime()-c1, diskWritten()-w1
		stopProfile()
		if f := os.Getenv("PFBENCH_BACKFILL_MEMPROFILE"); f != "" {
			writeHeapProfile(b, f)
		}
		heap, rss := peak.stop()
		st, err := srv["b"].st.Status(context.Background(), store.MailboxRef{Store: "b-pub", Name: "/F"})
		if err != nil || st.Messages != uint32(posts) {
			b.Fatalf("replica holds %d of %d posts (%v)", st.Messages, posts, err)
		}
		closeAll(srv)
		b.ReportMetric(float64(posts)/took.Seconds(), "backfill-msgs/s")
		b.ReportMetric(float64(posts)/local.Seconds(), "local-deliver-msgs/s")
		b.ReportMetric(local.Seconds()/took.Seconds(), "backfill/local")
		// CPU time of the whole process per post: what the machine's
		// load does not change much, unlike the rates.
		b.ReportMetric(float64(tookCPU.Microseconds())/float64(posts), "backfill-cpu-µs/msg")
		b.ReportMetric(float64(localCPU.Microseconds())/float64(posts), "local-cpu-µs/msg")
		// Bytes the process had written to disk (logs, flushes and the
		// compactions that ran meanwhile), per post: the write amplification.
		b.ReportMetric(float64(localDisk)/1024/float64(posts), "local-disk-KB/msg")
		b.ReportMetric(float64(tookDisk)/1024/float64(posts), "backfill-disk-KB/msg")
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(peak.live)/(1<<20), "peak-live-MB")
		if limit < 1<<50 {
			b.ReportMetric(float64(limit)/(1<<20), "heap-limit-MB")
		}
		if rss > 0 {
			b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
		}
	}
}

// cpuTime is the user and system CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// diskWritten is the bytes the process caused to be written to storage so
// far (/proc/self/io write_bytes; 0 where unknown).
func diskWritten() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// writeHeapProfile writes the heap in use now (after a GC) to file.
func writeHeapProfile(b *testing.B, file string) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// memPeak samples the heap in use every 10 ms; on Linux it also resets
// the process's RSS high-water mark so stop reports the peak since start.
// It also follows the live heap (what the last collection left: the heap in
// use minus garbage, what badger's options bound) and, when profile is
// set, writes a heap profile each time the live heap reaches a new peak, so
// the file shows what was live at the worst moment.
type memPeak struct {
	stopc   chan struct{}
	done    chan struct{}
	heap    uint64
	live    uint64
	profile string
}

func newMemPeak() *memPeak { return newMemPeakProfile("") }

func newMemPeakProfile(profile string) *memPeak {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM (Linux); best effort
	m := &memPeak{stopc: make(chan struct{}), done: make(chan struct{}), profile: profile}
	go func() {
		defer close(m.done)
		var ms runtime.MemStats
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			runtime.ReadMemStats(&ms)
			m.heap = max(m.heap, ms.HeapInuse)
			metrics.Read(live)
			if v := live[0].Value.Uint64(); v > m.live {
				m.live = v
				if m.profile != "" && v > 64<<20 {
					if f, err := os.Create(m.profile); err == nil {
						pprof.Lookup("heap").WriteTo(f, 0)
						f.Close()
					}
				}
			}
			select {
			case <-m.stopc:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return m
}

// stop returns the peak heap in use and the peak RSS (0 if unknown).
func (m *memPeak) stop() (heap, rss uint64) {
	close(m.stopc)
	<-m.done
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return m.heap, rss
}

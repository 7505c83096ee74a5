package bench

// Scheduler benchmark (issue 11 item 2, README "Scheduler: ingress with a
// backlog"): SMTP accepts per second of one server whose queue holds
// 100,000 messages waiting for a connector that is down, against the same
// server with an empty queue, in one run; and the process memory with the
// backlog loaded.
//
//	go test ./bench/ -run '^$' -bench 'IngressBacklog' -benchtime 3000x

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/envelope"
	"pfrouter/node"
	"pfrouter/queue"
)

// backlogOrg is ingressOrg plus bx2 behind a connector that is down: mail
// for /Far waits in bx1's queue for link state (R10).
const backlogOrg = `
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
routing_groups: [{name: rg-bench}, {name: rg-far}]
sites: [{name: bench}]
limits: {max_connections_per_ip: 1000}
routing: {retry_initial: 1h, retry_max: 2h}
connectors:
  - {name: far, between: [rg-bench, rg-far], cost: 10, state: down, bridgeheads: {rg-bench: [bx1], rg-far: [bx2]}}
servers:
  - name: bx1
    site: bench
    routing_group: rg-bench
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx1-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
  - name: bx2
    site: bench
    routing_group: rg-far
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx2-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx1-pub]}
  - {path: /Far, hierarchy: Public Folders, addresses: [far@contoso.example], replicas: [bx2-pub]}
`

// backlogSettle is the pause between start-up and the load.
const backlogSettle = 10 * time.Second

// backlogSize is how many messages wait; BACKLOG overrides it.
func backlogSize() int {
	if n, err := strconv.Atoi(os.Getenv("BACKLOG")); err == nil && n >= 0 {
		return n
	}
	return 100000
}

// fillBacklog writes n messages for /Far into bx1's queue as the queue
// manager leaves them after their first attempt with the connector down:
// waiting for link state, next retry in an hour. 2 KB bodies.
func fillBacklog(b *testing.B, dir string, n int) {
	b.Helper()
	q, err := queue.Open(filepath.Join(dir, "queue"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	now := time.Now()
	body := []byte("Subject: waiting\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				id := q.NewID()
				env := &envelope.Envelope{ID: id, OriginID: id, MessageID: fmt.Sprintf("<w%d@bench>", i), From: "load@example.net",
					Arrived: now, FirstSeen: now, Size: int64(len(body)), TraceParent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
					Recipients: []envelope.Recipient{{Addr: "far@contoso.example", State: envelope.Pending, Waiting: true, Attempts: 1,
						NextAttempt: now.Add(time.Hour), Code: "4.4.1", Reason: "no replica of /Far is reachable now (R10); waiting for link state"}}}
				if err := q.Put(context.Background(), id, env.Marshal(), body); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

func startBacklogNode(b *testing.B, waiting int) *node.Node {
	b.Helper()
	org, err := config.Parse([]byte(backlogOrg), "backlog.yaml", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	if waiting > 0 {
		t0 := time.Now()
		fillBacklog(b, org.DataDir(org.ServerByName("bx1"), base), waiting)
		b.Logf("queued %d waiting messages in %.1fs", waiting, time.Since(t0).Seconds())
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := node.StartAll(context.Background(), org, []string{"bx1"}, node.Options{BaseDir: base, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	n := c.Nodes["bx1"]
	deadline := time.Now().Add(5 * time.Minute)
	for n.Qmgr.Depth() < waiting {
		if time.Now().After(deadline) {
			b.Fatalf("queue manager read %d of %d waiting messages", n.Qmgr.Depth(), waiting)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// waitDepth waits until the queue manager holds want messages (the
// backlog) again: every accepted one was delivered.
func waitDepth(b *testing.B, n *node.Node, want int) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for n.Qmgr.Depth() > want {
		if time.Now().After(deadline) {
			b.Fatalf("queue still holds %d messages, want %d", n.Qmgr.Depth(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// profileIf writes a CPU profile of the load phase to the file named by
// the environment variable env (BACKLOG_PROFILE_0: empty queue,
// BACKLOG_PROFILE_1: with the backlog), if set.
func profileIf(b *testing.B, env string) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// memMB is the Go heap in use and the resident set of this process, after
// a collection, in MB.
func memMB() (heap, rss float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapInuse) / (1 << 20)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				rss = kb / 1024
			}
		}
	}
	return heap, rss
}

// BenchmarkIngressBacklog: b.N 10 KB posts at 16 sessions into a server
// with an empty queue, then into one whose queue holds 100,000 messages
// waiting for a down connector, twice each, alternating. Reports both
// rates (and logs backlog / empty; goal >= 0.9), and the memory of the
// whole process (server and load generator) with the backlog loaded
// before the load (heap_MB, rss_MB; goal < 300 MB) and after it.
func BenchmarkIngressBacklog(b *testing.B) {
	const conns = 16
	waiting := backlogSize()
	var empty, backlog []float64
	b.StopTimer()
	for round := 0; round < 2; round++ {
		for _, w := range []int{0, waiting} {
			b.Run(fmt.Sprintf("round=%d/waiting=%d", round, w), func(b *testing.B) {
				b.StopTimer()
				if b.N == 1 {
					// The framework's probing run (the backlog takes
					// long to write): measure only the real run, so
					// run with -benchtime Nx, N > 1.
					return
				}
				n := startBacklogNode(b, w)
				// Let badger finish flushing and compacting what the
				// backlog left in the queue's logs, as a server whose
				// backlog built up over hours would have; the empty run
				// waits as long.
				time.Sleep(backlogSettle)
				var heapMB, rssMB float64
				if w > 0 {
					heapMB, rssMB = memMB()
					if path := os.Getenv("BACKLOG_HEAPPROFILE"); path != "" {
						if f, err := os.Create(path); err == nil {
							pprof.WriteHeapProfile(f)
							f.Close()
						}
					}
				}
				addr := n.Org.ServerByName("bx1").Listen.SMTP
				stopProfile := profileIf(b, fmt.Sprintf("BACKLOG_PROFILE_%d", min(w, 1)))
				cpu0 := cpuTime()
				b.StartTimer()
				r := runLoad(b, addr, conns, b.N)
				b.StopTimer()
				stopProfile()
				// Process CPU (server and load generator) per message
				// during the load: what the scheduler costs shows here
				// even when a busy machine hides it in the rate.
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu_ms/msg")
				report(b, r)
				waitDepth(b, n, w)
				if w > 0 {
					backlog = append(backlog, r.Rate)
					h, rss := memMB()
					b.ReportMetric(heapMB, "heap_MB")
					b.ReportMetric(rssMB, "rss_MB")
					b.ReportMetric(h, "heap_after_MB")
					b.ReportMetric(rss, "rss_after_MB")
				} else {
					empty = append(empty, r.Rate)
				}
			})
		}
	}
	if len(empty) == 2 && len(backlog) == 2 {
		b.Logf("empty queue %.0f, %.0f msgs/s; %d waiting %.0f, %.0f msgs/s; backlog/empty %.2f",
			empty[0], empty[1], waiting, backlog[0], backlog[1], (backlog[0]+backlog[1])/(empty[0]+empty[1]))
	}
}

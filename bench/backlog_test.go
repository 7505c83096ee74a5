package bench

// Scheduler benchmark (issue 11 item 2, README "Scheduler: ingress with
// 100,000 messages waiting"): SMTP accepts per second of one server whose
// queue holds 100,000 messages waiting for a connector that is down,
// against the same server with an empty queue, both in one process, in
// alternating rounds; and the process memory with the backlog loaded.
//
//	go test ./bench/ -run '^$' -bench 'IngressBacklog' -benchtime 1000x

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

	"pfrouter/bench/smtpload/load"
	"pfrouter/config"
	"pfrouter/envelope"
	"pfrouter/node"
	"pfrouter/queue"
)

// backlogOrg: bx1 is the bridgehead of two connectors. Behind "far",
// which is down, bx2 holds /Far: mail for it waits in bx1's queue for link
// state (R10). Behind "near", which is up, bx4 holds /Near: mail for it
// from bx3 (bx1's routing group) goes bx3 > bx1 > bx4. A post to bx3 is
// relayed at accept to bx1 (mail from outside the organization,
// qmgr.Options.RelayAtAccept), which queues it (mail from a server is not
// relayed at accept) and its scheduler relays it to bx4: that is a post
// through bx1's queue and scheduler. A post to /Sales at bx1 is delivered
// at accept and never enters the queue. /Near's hierarchy has bx4's
// store only, so the backlog does not wait on bx4.
const backlogOrg = `
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
routing_groups: [{name: rg-bench}, {name: rg-far}, {name: rg-near}]
sites: [{name: bench}]
limits: {max_connections_per_ip: 1000}
routing: {retry_initial: 1h, retry_max: 2h}
connectors:
  - {name: far, between: [rg-bench, rg-far], cost: 10, state: down, bridgeheads: {rg-bench: [bx1], rg-far: [bx2]}}
  - {name: near, between: [rg-bench, rg-near], cost: 10, bridgeheads: {rg-bench: [bx1], rg-near: [bx4]}}
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
  - name: bx3
    site: bench
    routing_group: rg-bench
    listen: {smtp: "127.0.0.1:0"}
  - name: bx4
    site: bench
    routing_group: rg-near
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx4-pub, kind: public, hierarchy: Near, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}, {name: Near, tlh: application}]
folders:
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx1-pub]}
  - {path: /Far, hierarchy: Public Folders, addresses: [far@contoso.example], replicas: [bx2-pub]}
  - {path: /Near, hierarchy: Near, addresses: [near@contoso.example], mail_enabled: true, replicas: [bx4-pub]}
`

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

// backlogDirs writes an organization whose bx1 has waiting messages in
// its queue (none when waiting is 0) and returns it and its base directory.
func backlogDirs(b *testing.B, waiting int) (*config.Org, string) {
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
	return org, base
}

// startBacklogCluster starts servers of org over base, and waits until
// bx1's queue manager has read its waiting messages and the process is
// quiet again (badger compacting what the backlog left in the queue's
// logs, as a server whose backlog built up over hours would have done).
// The returned function closes the servers (also at the end of the
// benchmark).
func startBacklogCluster(b *testing.B, org *config.Org, base string, waiting int, servers ...string) (*node.Cluster, func()) {
	b.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	t0 := time.Now()
	c, err := node.StartAll(context.Background(), org, servers, node.Options{BaseDir: base, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.Close(ctx)
		})
	}
	b.Cleanup(closeFn)
	n := c.Nodes["bx1"]
	deadline := time.Now().Add(5 * time.Minute)
	for n.Qmgr.Depth() < waiting {
		if time.Now().After(deadline) {
			b.Fatalf("queue manager read %d of %d waiting messages", n.Qmgr.Depth(), waiting)
		}
		time.Sleep(50 * time.Millisecond)
	}
	loaded := time.Since(t0)
	quiet, frac := waitQuiet(2 * time.Minute)
	b.Logf("%v, %d waiting: started and read in %.1fs, process quiet (%.0f%% of a CPU) %.1fs later", servers, waiting, loaded.Seconds(), 100*frac, quiet.Seconds())
	return c, closeFn
}

// waitQuiet waits until this process uses under a tenth of a CPU over two
// half-second windows in a row, or max passed; it returns how long it
// waited and the last window's CPU fraction. The process's own CPU, not
// the machine's load: other jobs on the machine do not keep it waiting.
func waitQuiet(max time.Duration) (time.Duration, float64) {
	const window = 500 * time.Millisecond
	start := time.Now()
	calm, frac := 0, 0.0
	for calm < 2 && time.Since(start) < max {
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(window)
		frac = float64(cpuTime()-c0) / float64(time.Since(t0))
		if frac < 0.1 {
			calm++
		} else {
			calm = 0
		}
	}
	return time.Since(start), frac
}

// backlogLoad posts msgs 10 KB messages to rcpt at server over conns
// sessions and waits until bx1 is done with them (its queue back to the
// waiting messages): the rate is of the accepts, the CPU per message is
// the process's until then.
func backlogLoad(b *testing.B, c *node.Cluster, server string, waiting int, rcpt string, conns, msgs int, profile string) loadRun {
	b.Helper()
	stop := cpuProfile(b, profile)
	cpu0 := cpuTime()
	n := c.Nodes["bx1"]
	res, err := load.Run(context.Background(), load.Config{Addr: c.Nodes[server].Org.ServerByName(server).Listen.SMTP, Conns: min(conns, msgs), Messages: msgs,
		Size: ingressSize, From: "load@example.net", Rcpts: []string{rcpt}, RSET: true})
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Fatalf("%d of %d messages failed: %v", res.Failed, msgs, res.Errors)
	}
	waitDepth(b, n, waiting)
	cpu := cpuTime() - cpu0
	stop()
	return loadRun{rate: res.Rate, cpuMs: float64(cpu) / float64(time.Millisecond) / float64(msgs)}
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

// profileIf writes a CPU profile to the file named by the environment
// variable env, if set, until the returned function is called.
func profileIf(b *testing.B, env string) func() { return cpuProfile(b, os.Getenv(env)) }

// cpuProfile writes a CPU profile to path ("": none) until the returned
// function is called.
func cpuProfile(b *testing.B, path string) func() {
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

// BenchmarkIngressBacklog: SMTP accepts per second of bx1 with waiting
// messages (100,000; BACKLOG=n) for a connector that is down, against bx1
// with an empty queue (goal: within 10%), and the memory of the process
// with bx1 alone holding the backlog (goal < 300 MB). Both setups (bx1,
// bx3, bx4 each) run at once in this process; each round posts b.N 10 KB
// messages at 16 sessions to each, alternating which goes first, for two
// recipients: /Sales at bx1, delivered at accept without the queue, and
// /Near at bx3, relayed at accept to bx1, which queues it and relays it to
// bx4 from its scheduler. BACKLOG_ROUNDS rounds (6). Reports the medians
// of each setup's rate and CPU per message and of the per-round
// backlog/empty ratios; the rounds are printed on stdout.
//
// BACKLOG_PROFILE_0=f / BACKLOG_PROFILE_1=f: CPU profiles of every load
// against the empty / backlogged server, one file per load
// (f.<recipient>.<round>; go tool pprof merges them).
// BACKLOG_HEAPPROFILE=f: heap with the backlog loaded, before the load.
func BenchmarkIngressBacklog(b *testing.B) {
	if b.N == 1 {
		// The framework's probing run (the backlog takes long to write):
		// measure only the real run, so run with -benchtime Nx, N > 1.
		return
	}
	b.StopTimer()
	const conns = 16
	waiting := backlogSize()
	rounds := envInt(b, "BACKLOG_ROUNDS", 6)
	// Memory: bx1 alone with the backlog, as a server holds it; then it
	// restarts with bx3 and bx4 for the loads.
	org, base := backlogDirs(b, waiting)
	_, closeAlone := startBacklogCluster(b, org, base, waiting, "bx1")
	heapMB, rssMB := memMB()
	if path := os.Getenv("BACKLOG_HEAPPROFILE"); path != "" {
		writeHeapProfile(b, path)
	}
	closeAlone()
	full, _ := startBacklogCluster(b, org, base, waiting, "bx1", "bx3", "bx4")
	org0, base0 := backlogDirs(b, 0)
	empty, closeEmpty := startBacklogCluster(b, org0, base0, 0, "bx1", "bx3", "bx4")
	servers := []*node.Cluster{empty, full}
	depth := []int{0, waiting}
	// local: delivered at accept at bx1; queued: relayed at accept by bx3
	// to bx1, queued there and relayed by bx1's scheduler to bx4.
	rcpts := []struct{ name, server, addr string }{{"local", "bx1", ingressRcpt}, {"queued", "bx3", "near@contoso.example"}}
	// runs[2*k+s]: recipient k, server s (0 empty, 1 backlog).
	runs := make([][]loadRun, 2*len(rcpts))
	for round := 0; round < rounds; round++ {
		for k, rc := range rcpts {
			for i := range 2 {
				s := (i + round) % 2
				profile := os.Getenv(fmt.Sprintf("BACKLOG_PROFILE_%d", s))
				if profile != "" {
					profile = fmt.Sprintf("%s.%s.%d", profile, rc.name, round)
				}
				runs[2*k+s] = append(runs[2*k+s], backlogLoad(b, servers[s], rc.server, depth[s], rc.addr, conns, b.N, profile))
			}
		}
	}
	for k, rc := range rcpts {
		reportRounds(b, []string{rc.name + "-empty", rc.name + "-backlog"}, 0, runs[2*k:2*k+2])
	}
	// After the loads, the empty servers closed: bx1 with its backlog,
	// and bx3 and bx4.
	closeEmpty()
	h, rss := memMB()
	b.ReportMetric(heapMB, "heap_MB")
	b.ReportMetric(rssMB, "rss_MB")
	b.ReportMetric(h, "heap_after_MB")
	b.ReportMetric(rss, "rss_after_MB")
	b.Logf("%d waiting: bx1 alone heap %.0f MB, RSS %.0f MB before the loads; with bx3 and bx4 after them heap %.0f MB, RSS %.0f MB",
		waiting, heapMB, rssMB, h, rss)
}

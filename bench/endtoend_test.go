package bench

// End to end across a connector (issue 11, README "SMTP ingress", "End to
// end across a connector"): posts accepted at bx1 for a folder whose only
// replica is on bx2, across a connector, relayed over SMTP with the
// organization's TLS and delivered into bx2's store; beside it, in the
// same process and run, the single-server case: the same load into bx1
// for a folder whose replica is local. Both rates are from the first
// MAIL to the last message in the folder's store, so the ratio compares
// accept-to-delivered with accept-to-delivered.
//
//	go test ./bench/ -run '^$' -bench 'EndToEnd' -benchtime 2000x
//	PFBENCH_E2E_CPUPROFILE=e2e.prof ...   # CPU profile of the last end-to-end phase
//	go tool pprof -tagfocus server=bx1 e2e.prof   # one server's share (node labels its goroutines)

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"pfrouter/bench/smtpload/load"
	"pfrouter/node"
	"pfrouter/store"
)

const e2eOrg = `
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
routing_groups: [{name: rg-a}, {name: rg-b}]
sites: [{name: bench}]
limits: {max_connections_per_ip: 1000}
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [bx1], rg-b: [bx2]}}
servers:
  - name: bx1
    site: bench
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx1-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
  - name: bx2
    site: bench
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx2-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}]
folders:
  - {path: /Local, hierarchy: Public Folders, addresses: [local@contoso.example], replicas: [bx1-pub]}
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx2-pub]}
`

// e2eRun posts n messages at conns sessions into bx1 of a fresh cluster
// for rcpt and waits until folder (on server at) holds all n. It returns
// the accept-to-delivered rate and the process CPU per message.
func e2eRun(b *testing.B, rcpt, at string, ref store.MailboxRef, conns, n int, profile string) (rate float64, cpu time.Duration) {
	b.Helper()
	c := startCluster(b, e2eOrg)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c.Close(ctx)
	}()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	t0, c0 := time.Now(), cpuTime()
	res, err := load.Run(context.Background(), load.Config{Addr: c.Nodes["bx1"].Org.ServerByName("bx1").Listen.SMTP,
		Conns: min(conns, n), Messages: n, Size: ingressSize, From: "load@example.net", Rcpts: []string{rcpt}, RSET: true})
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Fatalf("%d of %d messages failed: %v", res.Failed, n, res.Errors)
	}
	// bx1's queue manager holds no message once every post is relayed,
	// and a relay ends only after bx2's 250, which follows bx2's store
	// commit: its depth is a cheap poll, counting the folder (Status reads
	// every message's record) is not, so the folder is counted at the end.
	deadline := time.Now().Add(3 * time.Minute)
	for c.Nodes["bx1"].Qmgr.Depth() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("bx1 still has %d messages queued 3 minutes after the load", c.Nodes["bx1"].Qmgr.Depth())
		}
		time.Sleep(2 * time.Millisecond)
	}
	took, used := time.Since(t0), cpuTime()-c0
	st, err := c.Nodes[at].Store.Status(context.Background(), ref)
	if err != nil || st.Messages != uint32(n) || queued(c.Nodes["bx1"]) != 0 {
		b.Fatalf("%s holds %d of %d posts once bx1's queue is empty (%v)", ref.Store, st.Messages, n, err)
	}
	return float64(n) / took.Seconds(), used / time.Duration(n)
}

func queued(n *node.Node) int {
	count := 0
	n.Queue.Scan(func(string, []byte) error { count++; return nil })
	return count
}

// BenchmarkEndToEnd10KB: b.N 10 KB posts at 16 sessions, single server
// (accepted and delivered at bx1) and end to end (accepted at bx1,
// delivered at bx2 across the connector), alternating for ROUNDS rounds
// (PFBENCH_E2E_ROUNDS, default 2); e2e/single is the ratio of the summed
// rates (goal: at least 0.70).
func BenchmarkEndToEnd10KB(b *testing.B) {
	conns := envInt(b, "PFBENCH_E2E_CONNS", 16)
	rounds := envInt(b, "PFBENCH_E2E_ROUNDS", 2)
	profile := os.Getenv("PFBENCH_E2E_CPUPROFILE")
	b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
		var single, e2e float64
		var singleCPU, e2eCPU time.Duration
		for r := 0; r < rounds; r++ {
			rs, cs := e2eRun(b, "local@contoso.example", "bx1", store.MailboxRef{Store: "bx1-pub", Name: "/Local"}, conns, b.N, "")
			p := ""
			if r == rounds-1 {
				p = profile
			}
			re, ce := e2eRun(b, ingressRcpt, "bx2", store.MailboxRef{Store: "bx2-pub", Name: "/Sales"}, conns, b.N, p)
			b.Logf("round %d: single %.0f msgs/s (%.0f cpu-µs/msg), end to end %.0f msgs/s (%.0f cpu-µs/msg), ratio %.2f",
				r, rs, float64(cs.Microseconds()), re, float64(ce.Microseconds()), re/rs)
			single, e2e = single+rs, e2e+re
			singleCPU, e2eCPU = singleCPU+cs, e2eCPU+ce
		}
		b.ReportMetric(single/float64(rounds), "single-msgs/s")
		b.ReportMetric(e2e/float64(rounds), "e2e-msgs/s")
		b.ReportMetric(e2e/single, "e2e/single")
		b.ReportMetric(float64(singleCPU.Microseconds())/float64(rounds), "single-cpu-µs/msg")
		b.ReportMetric(float64(e2eCPU.Microseconds())/float64(rounds), "e2e-cpu-µs/msg")
	})
}

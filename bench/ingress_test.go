package bench

// "SMTP ingress" benchmarks (see README.md): pfrouter's durable SMTP
// ingress, in process, driven by the smtpload client core, next to the
// go-smtp discard sink that is the protocol ceiling. Each pfrouter
// sub-benchmark also runs the sink for the same number of messages and
// reports pfrouter's share of it (ceiling_ratio), so the ratio comes from
// one process on one machine state.
//
//	go test ./bench/ -run '^$' -bench 'Ingress10KB' -benchtime 3000x

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"pfrouter/bench/smtpload/load"
	"pfrouter/bench/smtpsink/sink"
	"pfrouter/config"
	"pfrouter/node"
)

// ingressOrg is bench/scripts/ingress-org.yaml on port 0: one server whose
// folder replica is local, so a post is queued durably and delivered into
// the local store, never relayed.
const ingressOrg = `
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
routing_groups: [{name: rg-bench}]
sites: [{name: bench}]
# Every load session comes from 127.0.0.1: lift the per-address cap.
limits: {max_connections_per_ip: 1000}
servers:
  - name: bx1
    site: bench
    routing_group: rg-bench
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: bx1-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx1-pub]}
`

const (
	ingressSize = 10 << 10
	ingressRcpt = "sales@contoso.example"
)

var ingressConns = []int{1, 16, 64}

func startIngressNode(b *testing.B) *node.Node {
	b.Helper()
	c := startCluster(b, ingressOrg)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c.Nodes["bx1"]
}

// startCluster serves every server of the organization yaml in this
// process, logging nowhere; the caller closes it.
func startCluster(b *testing.B, yaml string) *node.Cluster {
	b.Helper()
	org, err := config.Parse([]byte(yaml), "bench.yaml", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := node.StartAll(context.Background(), org, nil, node.Options{BaseDir: b.TempDir(), Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func startSink(b *testing.B) string {
	b.Helper()
	s, err := sink.New(sink.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	b.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

func runLoad(b *testing.B, addr string, conns, n int) *load.Result {
	b.Helper()
	res, err := load.Run(context.Background(), load.Config{Addr: addr, Conns: min(conns, n), Messages: n, Size: ingressSize,
		From: "load@example.net", Rcpts: []string{ingressRcpt}, RSET: true})
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Fatalf("%d of %d messages failed: %v", res.Failed, n, res.Errors)
	}
	return res
}

func report(b *testing.B, r *load.Result) {
	b.ReportMetric(r.Rate, "msgs/s")
	b.ReportMetric(r.Data.P50, "p50_ms")
	b.ReportMetric(r.Data.P99, "p99_ms")
}

// waitDrained waits until the queue manager has delivered every queued
// message, so the next run starts from an empty queue.
func waitDrained(b *testing.B, n *node.Node) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		count := 0
		n.Queue.Scan(func(string, []byte) error { count++; return nil })
		if count == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("queue not drained within 2 minutes")
}

// BenchmarkIngress10KB: 10 KB posts accepted durably by pfrouter (250 only
// after the queue commit, S2), b.N messages over 1, 16 and 64 sessions.
func BenchmarkIngress10KB(b *testing.B) {
	for _, conns := range ingressConns {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			n := startIngressNode(b)
			addr := n.Org.ServerByName("bx1").Listen.SMTP
			sinkAddr := startSink(b)
			b.SetBytes(ingressSize)
			b.ResetTimer()
			r := runLoad(b, addr, conns, b.N)
			b.StopTimer()
			report(b, r)
			waitDrained(b, n)
			s := runLoad(b, sinkAddr, conns, b.N)
			b.ReportMetric(r.Rate/s.Rate, "ceiling_ratio")
		})
	}
}

// BenchmarkSinkIngress10KB: the same load against the go-smtp discard sink,
// the ceiling of the SMTP protocol layer on this machine.
func BenchmarkSinkIngress10KB(b *testing.B) {
	for _, conns := range ingressConns {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			addr := startSink(b)
			b.SetBytes(ingressSize)
			b.ResetTimer()
			r := runLoad(b, addr, conns, b.N)
			b.StopTimer()
			report(b, r)
		})
	}
}

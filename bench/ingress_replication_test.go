package bench

// Ingress with replication on vs off (issue 12, README "Public folder
// replication"): the SMTP ingress benchmark's load into bx1, whose folder
// /Sales has a second replica on bx2 across a connector. "off": neither
// server has listen.replication (the posts stay in bx1-pub); "on": bx2
// pulls every post from bx1 over TLS while the load runs. Both runs in one
// process, back to back, so the ratio compares one machine state; bx2
// runs in the same process (on one machine its pulls and writes compete
// with bx1's ingress, which a second machine would not).
//
//	go test ./bench/ -run '^$' -bench 'IngressReplication' -benchtime 3000x

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"pfrouter/node"
	"pfrouter/store"
)

const ingressReplOrg = `
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
routing_groups: [{name: rg-bench}, {name: rg-far}]
sites: [{name: bench}]
limits: {max_connections_per_ip: 1000}
connectors:
  - {name: far, between: [rg-bench, rg-far], cost: 10, bridgeheads: {rg-bench: [bx1], rg-far: [bx2]}}
servers:
  - name: bx1
    site: bench
    routing_group: rg-bench
    listen: {smtp: "127.0.0.1:0"REPL}
    stores:
      - {name: bx1-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
  - name: bx2
    site: bench
    routing_group: rg-far
    listen: {smtp: "127.0.0.1:0"REPL}
    stores:
      - {name: bx2-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx1-pub, bx2-pub]}
`

func startReplCluster(b *testing.B, replicate bool) *node.Cluster {
	b.Helper()
	repl := ""
	if replicate {
		repl = `, replication: "127.0.0.1:0"`
	}
	return startCluster(b, strings.ReplaceAll(ingressReplOrg, "REPL", repl))
}

// BenchmarkIngressReplication10KB: b.N 10 KB posts into bx1 with
// replication off, then on, at 16 and 64 sessions; on/off is the ratio of
// accepted messages per second (goal: at least 0.8), replicated_s how long
// after the last 250 bx2-pub held every post.
func BenchmarkIngressReplication10KB(b *testing.B) {
	for _, conns := range []int{16, 64} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			rates := map[bool]float64{}
			cpu := map[bool]time.Duration{}
			var replicated time.Duration
			for _, on := range []bool{false, true} {
				c := startReplCluster(b, on)
				bx1 := c.Nodes["bx1"]
				c0 := cpuTime()
				r := runLoad(b, bx1.Org.ServerByName("bx1").Listen.SMTP, conns, b.N)
				end := time.Now()
				waitDrained(b, bx1)
				if on {
					ref := store.MailboxRef{Store: "bx2-pub", Name: "/Sales"}
					deadline := end.Add(5 * time.Minute)
					for {
						st, err := c.Nodes["bx2"].Store.Status(context.Background(), ref)
						if err == nil && st.Messages == uint32(b.N) {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("bx2-pub holds %d of %d posts after 5 minutes", st.Messages, b.N)
						}
						time.Sleep(50 * time.Millisecond)
					}
					replicated = time.Since(end)
				}
				cpu[on] = cpuTime() - c0
				rates[on] = r.Rate
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				c.Close(ctx)
				cancel()
			}
			b.ReportMetric(rates[false], "off-msgs/s")
			b.ReportMetric(rates[true], "on-msgs/s")
			b.ReportMetric(rates[true]/rates[false], "on/off")
			b.ReportMetric(replicated.Seconds(), "replicated_s")
			b.ReportMetric(float64(cpu[false].Microseconds())/float64(b.N), "off-cpu-µs/msg")
			b.ReportMetric(float64(cpu[true].Microseconds())/float64(b.N), "on-cpu-µs/msg")
		})
	}
}

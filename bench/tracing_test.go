package bench

// "Tracing overhead" benchmarks (see README.md): SMTP ingress with the
// trace exporter off, writing to stdout (discarded) and exporting OTLP to a
// local sink, the three servers in one process, loaded in turn over
// several rounds so the ratios compare like with like. The decision-path
// overhead is measured beside the code, in node
// (BenchmarkDecisionInstrumentation).
//
//	go test ./bench/ -run '^$' -bench 'TracingIngress' -benchtime 1000x

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/node"
	"pfrouter/telemetry"
)

// BenchmarkTracingIngress10KB: b.N 10 KB posts at 16 sessions, accepted
// and delivered into the local store, against three servers that differ
// only in their trace exporter (none, stdout to io.Discard, OTLP to a
// local HTTP sink), started together and loaded one after the other,
// TRACING_ROUNDS rounds (5) in a rotating order. A load's CPU runs until
// its spans are exported (ForceFlush). Reports the medians of each
// server's rate and process CPU per message and of the per-round ratios
// against traces=none (goal: tracing on < 25% of the message, a CPU ratio
// under 1.25).
func BenchmarkTracingIngress10KB(b *testing.B) {
	if b.N == 1 {
		return // the framework's probing run: run with -benchtime Nx, N > 1
	}
	b.StopTimer()
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer otlp.Close()
	rounds := envInt(b, "TRACING_ROUNDS", 5)
	modes := []struct {
		name string
		cfg  telemetry.Config
	}{
		{"none", telemetry.Config{Traces: "none"}},
		{"stdout-discard", telemetry.Config{Traces: "stdout", Writer: io.Discard}},
		{"otlp-local", telemetry.Config{Traces: "otlp", Endpoint: otlp.URL}},
	}
	nodes := make([]*node.Node, len(modes))
	tels := make([]*telemetry.Telemetry, len(modes))
	for i, mode := range modes {
		org, err := config.Parse([]byte(ingressOrg), "ingress.yaml", b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		c, err := node.StartAll(context.Background(), org, nil, node.Options{BaseDir: b.TempDir(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			NewTelemetry: func(server string) *telemetry.Telemetry {
				cfg := mode.cfg
				cfg.Server = server
				t, err := telemetry.Setup(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				tels[i] = t
				return t
			}})
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c.Close(ctx)
		}()
		nodes[i] = c.Nodes["bx1"]
	}
	waitQuiet(30 * time.Second)
	runs := make([][]loadRun, len(modes))
	for round := 0; round < rounds; round++ {
		for j := range modes {
			i := (j + round) % len(modes)
			n := nodes[i]
			cpu0 := cpuTime()
			r := runLoad(b, n.Org.ServerByName("bx1").Listen.SMTP, 16, b.N)
			waitDrained(b, n) // delivery spans are part of the cost
			if err := tels[i].ForceFlush(context.Background()); err != nil {
				b.Fatal(err)
			}
			runs[i] = append(runs[i], loadRun{rate: r.Rate, cpuMs: float64(cpuTime()-cpu0) / float64(time.Millisecond) / float64(b.N)})
		}
	}
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = m.name
	}
	reportRounds(b, names, 0, runs)
}

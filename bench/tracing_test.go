package bench

// "Tracing overhead" benchmarks (see README.md): SMTP ingress with the
// trace exporter off, writing to stdout (discarded) and exporting OTLP to a
// local sink, in one process so the ratios compare like with like. The
// decision-path overhead is measured beside the code, in
// telemetry/bench_test.go (BenchmarkDecisionOnly vs BenchmarkDecisionSpan*).
//
//	go test ./bench/ -run '^$' -bench 'TracingIngress' -benchtime 2000x

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

func BenchmarkTracingIngress10KB(b *testing.B) {
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer otlp.Close()
	for _, mode := range []struct {
		name string
		cfg  telemetry.Config
	}{
		{"traces=none", telemetry.Config{Traces: "none"}},
		{"traces=stdout-discard", telemetry.Config{Traces: "stdout", Writer: io.Discard}},
		{"traces=otlp-local", telemetry.Config{Traces: "otlp", Endpoint: otlp.URL}},
	} {
		b.Run(mode.name, func(b *testing.B) {
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
			n := c.Nodes["bx1"]
			b.SetBytes(ingressSize)
			b.ResetTimer()
			r := runLoad(b, n.Org.ServerByName("bx1").Listen.SMTP, 16, b.N)
			waitDrained(b, n) // delivery spans are part of the cost
			b.StopTimer()
			report(b, r)
		})
	}
}

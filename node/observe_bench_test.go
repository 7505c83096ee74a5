package node

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/linkstate"
	"pfrouter/routing"
	"pfrouter/telemetry"
	"pfrouter/tracking"
)

// BenchmarkDecisionInstrumentation measures what the queue manager's
// decision path costs with its instrumentation (metrics, and spans when
// tracing is on) against the bare routing call, in one process (issue:
// under 5% with tracing off, under 25% with tracing on).
//
//	go test ./node -run '^$' -bench DecisionInstrumentation -benchmem
func BenchmarkDecisionInstrumentation(b *testing.B) {
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	ls, _ := linkstate.FromConfig(org)
	p := routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: 30}
	in := routing.Input{At: "ex1", Recipient: "eng@contoso.example", MessageID: "<m@x>", Now: now}
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer otlp.Close()
	tlog, err := tracking.Open(b.TempDir(), time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tlog.Close()
	b.Run("bare-route", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			routing.Route(dir.Snapshot(), ls.Graph(), p, in)
		}
	})
	for _, mode := range []struct {
		name     string
		cfg      telemetry.Config
		detailed bool
	}{
		{"traces=none", telemetry.Config{Traces: "none"}, false},
		{"traces=stdout-discard", telemetry.Config{Traces: "stdout", Writer: io.Discard}, true},
		{"traces=otlp-local", telemetry.Config{Traces: "otlp", Endpoint: otlp.URL}, true},
	} {
		tel, err := telemetry.Setup(context.Background(), mode.cfg)
		if err != nil {
			b.Fatal(err)
		}
		obs := &observer{server: "ex1", tel: tel, log: tlog}
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				var d routing.Decision
				if obs.Detailed() {
					d = routing.Decide(dir.Snapshot(), ls.Graph(), p, in)
				} else {
					d = routing.Route(dir.Snapshot(), ls.Graph(), p, in)
				}
				obs.Decision(ctx, tp, d, time.Since(start))
			}
		})
		tel.Shutdown(context.Background())
	}
}

package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

// decisionSpan is what the queue manager does per recipient: a span around
// one routing decision, its attributes, metrics.
func decisionSpan(ctx context.Context, tel *Telemetry, dir *directory.Directory, ls *linkstate.Table, p routing.Params, in routing.Input) {
	ctx, span := tel.Tracer().Start(ctx, SpanRoute)
	start := time.Now()
	d := routing.Decide(dir.Snapshot(), ls.Graph(), p, in)
	RecordDecision(span, d)
	span.End()
	tel.Metrics().Decision(ctx, d.Rule(), time.Since(start).Seconds())
}

func benchDecisionSpan(b *testing.B, cfg Config) { benchDecision(b, cfg, true) }

// BenchmarkDecisionOnly is the baseline: the routing decision without a
// span or metrics.
func BenchmarkDecisionOnly(b *testing.B) { benchDecision(b, Config{}, false) }

func benchDecision(b *testing.B, cfg Config, withSpan bool) {
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		b.Fatal(err)
	}
	dir, err := directory.New(org, directory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ls, err := linkstate.FromConfig(org)
	if err != nil {
		b.Fatal(err)
	}
	p := routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit}
	in := routing.Input{At: "ex1", Recipient: "eng@contoso.example", MessageID: "<m@x>", Now: time.Now()}
	ctx := context.Background()
	tel, err := Setup(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if withSpan {
			decisionSpan(ctx, tel, dir, ls, p, in)
		} else {
			routing.Decide(dir.Snapshot(), ls.Graph(), p, in)
		}
	}
	b.StopTimer()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		b.Log(err)
	}
}

func BenchmarkDecisionSpanNone(b *testing.B) { benchDecisionSpan(b, Config{Traces: TracesNone}) }

func BenchmarkDecisionSpanStdoutDiscard(b *testing.B) {
	benchDecisionSpan(b, Config{Traces: TracesStdout, Writer: io.Discard})
}

func BenchmarkDecisionSpanOTLPLocal(b *testing.B) {
	srv := httptest.NewServer(&otlpSink{})
	defer srv.Close()
	benchDecisionSpan(b, Config{Traces: TracesOTLP, Endpoint: srv.URL})
}

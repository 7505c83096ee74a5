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
	"pfrouter/internal/cpuclock"
	"pfrouter/linkstate"
	"pfrouter/qmgr"
	"pfrouter/routing"
	"pfrouter/telemetry"
	"pfrouter/tracking"
)

// BenchmarkDecisionInstrumentation measures what the queue manager's
// decision path (qmgr.StartDecision and Observation.Done with this package's observer: metrics,
// a sampled latency, and spans when tracing is on) costs against the bare
// routing call, in one process (issue 11: under 5% with tracing off). The
// -vs-bare benchmarks report the overhead as a percentage of the bare
// decision's CPU time, both loops alternating in one run.
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
	// The snapshot and graph are taken once, as the queue manager takes
	// them once per message: the decision is the routing call alone.
	snap, g := dir.Snapshot(), ls.Graph()
	route := func(detailed bool) routing.Decision {
		if detailed {
			return routing.Decide(snap, g, p, in)
		}
		return routing.Route(snap, g, p, in)
	}
	// Each call keeps its decision on its stack, as qmgr's decide does (a
	// decision shared by the loops would be on the heap, and copying it
	// would pay write barriers the queue manager does not).
	var delivered int
	count := func(d *routing.Decision) {
		if d.Outcome == routing.Deliver {
			delivered++
		}
	}
	bare := func(int) {
		d := route(false)
		count(&d)
	}
	b.Run("bare-route", func(b *testing.B) {
		b.ReportAllocs()
		cpuclock.Loop(b, bare)
	})
	// Control for the -vs-bare figures below: the bare decision against
	// itself reads 0% when the method has no bias.
	b.Run("bare-vs-bare", func(b *testing.B) { paired(b, bare, bare) })
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		cfg  telemetry.Config
	}{
		{"traces=none", telemetry.Config{Traces: "none"}},
		{"traces=stdout-discard", telemetry.Config{Traces: "stdout", Writer: io.Discard}},
		{"traces=otlp-local", telemetry.Config{Traces: "otlp", Endpoint: otlp.URL}},
	} {
		tel, err := telemetry.Setup(ctx, mode.cfg)
		if err != nil {
			b.Fatal(err)
		}
		obs := &observer{server: "ex1", tel: tel, log: tlog}
		// The queue manager's own code (qmgr's decide): an Observation
		// around the decision.
		observed := func(int) {
			o := qmgr.StartDecision(obs)
			d := route(o.Detailed())
			o.Done(ctx, tp, &d)
			count(&d)
		}
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuclock.Loop(b, observed)
		})
		// The same two loops alternating in blocks of 1,000 decisions in
		// one benchmark: the median over the blocks of the observed loop's
		// CPU time over the bare one's is the overhead, measured on one
		// machine state (the separate runs above drift with the load of a
		// shared machine).
		b.Run(mode.name+"-vs-bare", func(b *testing.B) { paired(b, bare, observed) })
		tel.Shutdown(ctx)
	}
	if delivered == 0 {
		b.Fatal("no decision delivered: the benchmark measures a failing path")
	}
}

// paired runs bare and observed alternately in blocks of 1,000 and reports
// their CPU times and the median ratio as overhead-% (cpuclock.Paired).
func paired(b *testing.B, bare, observed func(int)) {
	tb, ti, ratio, ok := cpuclock.Paired(b.N, 1000, bare, observed)
	if !ok {
		b.Skip("no thread CPU time on this OS")
	}
	b.ReportMetric(float64(tb.Nanoseconds()), "bare-cpu-ns/op")
	b.ReportMetric(float64(ti.Nanoseconds()), "observed-cpu-ns/op")
	b.ReportMetric(100*(ratio-1), "overhead-%")
}

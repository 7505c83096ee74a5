package telemetry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"pfrouter/routing"
)

// syncBuffer is a bytes.Buffer safe for the batcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// O3: the stdout exporter writes the spans, with their attributes, to the
// configured writer.
func TestO3StdoutExporterWritesSpans(t *testing.T) {
	var buf syncBuffer
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Traces: TracesStdout, Writer: &buf, Server: "ex1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer().Start(ctx, SpanRoute)
	if !span.IsRecording() {
		t.Fatal("stdout tracing: span is not recording")
	}
	span.SetAttributes(KeyRecipient.String("sales@contoso.example"))
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`"Name":"pfrouter.route"`, "sales@contoso.example", "service.instance.id", "ex1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout output lacks %s:\n%s", want, out)
		}
	}
}

// O3: traces none is a no-op provider: spans do not record.
func TestO3NoneIsNonRecording(t *testing.T) {
	ctx := context.Background()
	for _, traces := range []string{"", TracesNone} {
		tel, err := Setup(ctx, Config{Traces: traces})
		if err != nil {
			t.Fatal(err)
		}
		ctx2, span := tel.Tracer().Start(ctx, SpanReceive)
		if span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("traces %q: span records (%v) or has a context (%v)", traces, span.IsRecording(), span.SpanContext())
		}
		if tp := Inject(ctx2); tp != "" {
			t.Errorf("traces %q: Inject = %q, want empty", traces, tp)
		}
		span.End()
		if err := tel.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{Traces: "jaeger"},
		{Traces: TracesOTLP},
		{Traces: TracesOTLP, Endpoint: "127.0.0.1:4318"},
		{Traces: TracesOTLP, Endpoint: "ftp://x:1"},
	} {
		if tel, err := Setup(ctx, cfg); err == nil {
			tel.Shutdown(ctx)
			t.Errorf("Setup(%+v) accepted", cfg)
		} else if !strings.Contains(err.Error(), "telemetry.") {
			t.Errorf("Setup(%+v) error %q does not name the config field", cfg, err)
		}
	}
}

func TestOTLPURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":              "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":             "http://127.0.0.1:4318/v1/traces",
		"https://collector:4318/custom/path": "https://collector:4318/custom/path",
	} {
		if got, err := otlpURL(in); err != nil || got != want {
			t.Errorf("otlpURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// otlpSink is a local OTLP/HTTP receiver that counts trace exports.
type otlpSink struct {
	mu    sync.Mutex
	posts int
	bytes int
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
		s.mu.Lock()
		s.posts++
		s.bytes += len(body)
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (s *otlpSink) count() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posts, s.bytes
}

// O3: the OTLP exporter posts spans to the collector at the configured
// endpoint (no path: /v1/traces is used).
func TestO3OTLPExportArrives(t *testing.T) {
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Traces: TracesOTLP, Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer().Start(ctx, SpanRelay)
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	if posts, n := sink.count(); posts < 1 || n == 0 {
		t.Errorf("collector got %d posts (%d bytes), want at least one export", posts, n)
	}
}

// S8: the traceparent carried in a message header joins the next server's
// spans to the same trace.
func TestS8InjectExtractKeepsTraceID(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	ex1 := NewForTest(tp)
	ctx, span := ex1.Tracer().Start(context.Background(), SpanRelay)
	header := Inject(ctx)
	span.End()
	if !strings.HasPrefix(header, "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("Inject = %q, want a traceparent of trace %s", header, span.SpanContext().TraceID())
	}
	// The next server: a fresh context from the header.
	ctx3 := Extract(context.Background(), header)
	_, span3 := ex1.Tracer().Start(ctx3, SpanReceive)
	span3.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	if spans[1].SpanContext.TraceID() != spans[0].SpanContext.TraceID() {
		t.Errorf("receive span in trace %s, relay in %s", spans[1].SpanContext.TraceID(), spans[0].SpanContext.TraceID())
	}
	if spans[1].Parent.SpanID() != spans[0].SpanContext.SpanID() || !spans[1].Parent.IsRemote() {
		t.Errorf("receive span's parent = %v, want remote %s", spans[1].Parent, spans[0].SpanContext.SpanID())
	}
	// Garbage is ignored, not fatal.
	if sc := trace.SpanContextFromContext(Extract(context.Background(), "00-zz-1")); sc.IsValid() {
		t.Errorf("bad traceparent produced %v", sc)
	}
	if Inject(context.Background()) != "" {
		t.Error("Inject without a span is not empty")
	}
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// O2/O3: a real decision in the demo organization carries its reasons.
// From ex1, /Sales has its only replica on ex3-pub; ex4-pub is younger than
// store_min_age (R6).
func TestO3DecisionAttributes(t *testing.T) {
	d := contosoDecision(t, "ex1", "sales@contoso.example")
	if d.Outcome != routing.Deliver {
		t.Fatalf("decision = %+v", d)
	}
	m := attrMap(DecisionAttributes(d))
	for _, k := range []attribute.Key{KeyRecipient, KeyFolder, KeyHierarchy, KeyAt, KeyOutcome, KeyStep, KeyRule, KeyStore,
		KeyDestServer, KeyPath, KeyCost, KeyLinkState, KeyStoreMinAge, KeyHierStore, KeyHierRule, KeyHierSkipped,
		KeyReplicaStore, KeyReplicaRule, KeyReplicaCandidates} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing attribute %s", k)
		}
	}
	checks := map[attribute.Key]string{
		KeyRecipient: "sales@contoso.example", KeyFolder: "/Sales", KeyAt: "ex1", KeyOutcome: "deliver",
		KeyStep: "replica", KeyStore: "ex3-pub", KeyDestServer: "ex3", KeyStoreMinAge: "48h0m0s",
	}
	for k, want := range checks {
		if got := m[k].Emit(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := m[KeyPath].AsStringSlice(); strings.Join(got, ">") != strings.Join(d.Route, ">") || got[0] != "ex1" || got[len(got)-1] != "ex3" {
		t.Errorf("path = %v, route %v", got, d.Route)
	}
	if m[KeyCost].AsInt64() != int64(d.Cost) || d.Cost == 0 {
		t.Errorf("cost = %d, decision %d", m[KeyCost].AsInt64(), d.Cost)
	}
	if m[KeyRule].AsString() != d.Step2.Rule {
		t.Errorf("rule = %s, want step 2's %s", m[KeyRule].AsString(), d.Step2.Rule)
	}
	skipped := strings.Join(m[KeyHierSkipped].AsStringSlice(), "|")
	if !strings.Contains(skipped, "ex4-pub: ") {
		t.Errorf("hierarchy.skipped = %q, want ex4-pub with its reason (R6)", skipped)
	}
	cands := strings.Join(m[KeyReplicaCandidates].AsStringSlice(), "|")
	if !strings.Contains(cands, "ex3-pub on ex3: cost") {
		t.Errorf("replica.candidates = %q", cands)
	}
	if d.Rule() != d.Step2.Rule {
		t.Errorf("Rule = %q", d.Rule())
	}
}

// An NDR decision records the code and reason and marks the span as an
// error; a queued one does not.
func TestRecordDecisionNDR(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	tel := NewForTest(tp)
	d := contosoDecision(t, "ex1", "archive@contoso.example") // not mail-enabled (R15)
	if d.Outcome != routing.NDR {
		t.Fatalf("decision = %+v", d)
	}
	_, span := tel.Tracer().Start(context.Background(), SpanRoute)
	RecordDecision(span, d)
	span.End()
	s := exp.GetSpans()[0]
	m := attrMap(s.Attributes)
	if m[KeyStep].AsString() != "checks" || m[KeyCode].AsString() != "5.1.1" || !strings.Contains(m[KeyReason].AsString(), "R15") {
		t.Errorf("attributes = %v", s.Attributes)
	}
	if s.Status.Code.String() != "Error" || !strings.Contains(s.Status.Description, "5.1.1") {
		t.Errorf("status = %+v", s.Status)
	}
}

// Metrics reach /metrics under their Prometheus names.
func TestMetricsHandler(t *testing.T) {
	ctx := context.Background()
	tel := metricsOnly(t)
	m := tel.Metrics()
	m.Accepted(ctx)
	m.Refused(ctx, "relay")
	m.Delivered(ctx, "local")
	m.Delivered(ctx, "relayed")
	m.Queued(ctx)
	m.Deferred(ctx)
	m.Expired(ctx)
	m.NDR(ctx)
	m.Decision(ctx, "local-rg", 0.00002)
	m.SetQueueDepthFunc(func() int64 { return 42 })
	m.LinkStateChange(ctx)
	m.Session(ctx, "imap")
	m.Login(ctx, "imap", "ok")
	var nilM *Metrics
	nilM.Accepted(ctx) // a nil Metrics is a no-op, not a panic
	nilM.Decision(ctx, "x", 1)

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"pfrouter_messages_accepted_total 1",
		`pfrouter_messages_refused_total{`, `reason="relay"`,
		`pfrouter_messages_delivered_total{`, `kind="relayed"`,
		"pfrouter_messages_queued_total", "pfrouter_messages_deferred_total", "pfrouter_messages_expired_total",
		"pfrouter_messages_ndr_total",
		`pfrouter_routing_decisions_total{`, `rule="local-rg"`,
		"pfrouter_routing_decision_duration_seconds_bucket",
		"pfrouter_queue_depth 42",
		"pfrouter_linkstate_changes_total", `pfrouter_sessions_total{`, `proto="imap"`,
		`pfrouter_logins_total{`, `result="ok"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// One decision in DecisionSampleEvery of a rule sets the sample flag, which
// the caller clears when it times one; the counts stay exact when many
// goroutines count at once (the counters are lock-free).
func TestDecisionSampling(t *testing.T) {
	ctx := context.Background()
	tel := metricsOnly(t)
	m := tel.Metrics()
	flag := m.DecisionSample()
	take := func() bool { return flag.Load() && flag.CompareAndSwap(true, false) }
	for i := 1; i < DecisionSampleEvery; i++ {
		m.Decision(ctx, "local", -1)
		if take() {
			t.Fatalf("asked to time after %d decisions, want after %d", i, DecisionSampleEvery)
		}
	}
	m.Decision(ctx, "local", -1)
	if !take() || take() {
		t.Fatalf("after %d decisions: want one timed decision", DecisionSampleEvery)
	}
	var nilM *Metrics
	if nilM.DecisionSample() != nil {
		t.Error("nil Metrics has a sample flag")
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 1000; i++ {
				m.Decision(ctx, []string{"routing-group", "first", ""}[i%3], -1)
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{`rule="local"} 64`, `rule="routing-group"} 1336`, `rule="first"} 1332`, `rule="none"} 1332`} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// metricsOnly is telemetry with tracing off, shut down when the test ends.
func metricsOnly(t *testing.T) *Telemetry {
	t.Helper()
	tel, err := Setup(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel
}

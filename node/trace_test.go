package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"pfrouter/store"
	"pfrouter/telemetry"
)

// O3, S8: a post relayed across a connector yields one trace id on every
// server's spans, with the routing decision's attributes on the route
// spans.
func TestTraceOneTraceAcrossServers(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	org := parseOrg(t, testOrg)
	c, err := StartAll(t.Context(), org, nil, Options{BaseDir: t.TempDir(), Logger: testLogger(),
		NewTelemetry: func(string) *telemetry.Telemetry { return telemetry.NewForTest(tp) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	id, err := post(t, c.Nodes["s1"], "alice@test.example", "remote@test.example", "traced")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	time.Sleep(100 * time.Millisecond) // the last span ends just after delivery
	spans := rec.Ended()
	traces := map[string]bool{}
	servers := map[string]bool{}
	var route sdktrace.ReadOnlySpan
	for _, s := range spans {
		traces[s.SpanContext().TraceID().String()] = true
		for _, a := range s.Attributes() {
			if a.Key == telemetry.KeyServer {
				servers[a.Value.AsString()] = true
			}
		}
		if s.Name() == telemetry.SpanRoute && route == nil {
			route = s
		}
	}
	if len(traces) != 1 {
		t.Errorf("want one trace across servers, got %d trace ids over %d spans", len(traces), len(spans))
	}
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		if !servers[s] {
			t.Errorf("no span from %s", s)
		}
	}
	if route == nil {
		t.Fatal("no routing decision span")
	}
	attrs := map[attribute.Key]string{}
	for _, a := range route.Attributes() {
		attrs[a.Key] = a.Value.Emit()
	}
	if attrs[telemetry.KeyRecipient] != "remote@test.example" || attrs[telemetry.KeyStore] != "s4-pub" ||
		!strings.Contains(attrs[telemetry.KeyPath], "s4") || attrs[telemetry.KeyCost] != "10" {
		t.Errorf("decision attributes: %v", attrs)
	}
}

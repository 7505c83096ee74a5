// Package telemetry sets up OpenTelemetry for one pfrouter server (SPEC O3,
// S8): a tracer provider with the configured exporter (none, stdout or
// OTLP over HTTP), a meter provider exported to Prometheus on a registry of
// its own (served as /metrics on the admin listener), the instruments the
// queue manager and protocol servers update, W3C traceparent propagation
// across servers, and the span attributes of a routing decision.
//
// Neighbours: package routing produces the Decision that DecisionAttributes
// describes; qmgr, smtpd and the access servers start spans and bump
// Metrics; package tracking keeps the durable per-server event log that
// `pfrouter trace` reads.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporter choices for Config.Traces (config key telemetry.traces).
const (
	TracesNone   = "none"
	TracesStdout = "stdout"
	TracesOTLP   = "otlp"
)

// DefaultServiceName is the service.name of spans and metrics.
const DefaultServiceName = "pfrouter"

// instrumentation is the tracer and meter name.
const instrumentation = "pfrouter"

// Config selects the trace exporter.
type Config struct {
	Traces      string // none (default) | stdout | otlp
	Endpoint    string // OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (/v1/traces is added when there is no path)
	ServiceName string // default "pfrouter"
	// Server is this server's name, recorded as the resource attribute
	// service.instance.id so spans from several servers stay apart.
	Server string
	Writer io.Writer // stdout exporter target, default os.Stdout
}

// Telemetry is one server's tracer and meter providers.
type Telemetry struct {
	tp      trace.TracerProvider
	sdkTP   *sdktrace.TracerProvider // nil when tracing is off or injected
	mp      *sdkmetric.MeterProvider
	reg     *prometheus.Registry
	metrics *Metrics
	tracer  trace.Tracer
}

// Setup builds the providers from cfg. With traces "none" the tracer is a
// no-op: spans are not recorded and cost next to nothing.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	res := newResource(cfg)
	var tp trace.TracerProvider
	var sdkTP *sdktrace.TracerProvider
	switch cfg.Traces {
	case "", TracesNone:
		tp = noop.NewTracerProvider()
	case TracesStdout, TracesOTLP:
		exp, err := newSpanExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		sdkTP = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		tp = sdkTP
	default:
		return nil, fmt.Errorf("telemetry.traces: %q is not none, stdout or otlp", cfg.Traces)
	}
	t, err := build(tp, res)
	if err != nil {
		if sdkTP != nil {
			_ = sdkTP.Shutdown(ctx)
		}
		return nil, err
	}
	t.sdkTP = sdkTP
	return t, nil
}

// NewForTest wraps a tracer provider the test owns (for instance an SDK
// provider with a tracetest.InMemoryExporter); metrics work as in Setup.
// Shutdown does not shut the injected provider down.
func NewForTest(tp trace.TracerProvider) *Telemetry {
	t, err := build(tp, newResource(Config{}))
	if err != nil {
		panic(fmt.Sprintf("telemetry: %v", err)) // only fixed instrument definitions: cannot fail
	}
	return t
}

func build(tp trace.TracerProvider, res *resource.Resource) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := promexp.New(promexp.WithRegisterer(reg), promexp.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	m, err := newMetrics(mp.Meter(instrumentation))
	if err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, err
	}
	return &Telemetry{tp: tp, mp: mp, reg: reg, metrics: m, tracer: tp.Tracer(instrumentation)}, nil
}

func newResource(cfg Config) *resource.Resource {
	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if cfg.Server != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.Server))
	}
	// Schemaless: merging with a schema'd default resource can fail on a
	// schema URL mismatch between otel modules.
	return resource.NewSchemaless(attrs...)
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

// Tracing reports whether spans are recorded (an exporter is configured or
// a provider was injected): callers skip building span-only detail when not.
func (t *Telemetry) Tracing() bool {
	_, isNoop := t.tp.(noop.TracerProvider)
	return !isNoop
}

// Tracer is the tracer for pfrouter spans.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// TracerProvider is the provider behind Tracer.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MetricsHandler serves the metrics in Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{})
}

// Metrics are the instruments to update.
func (t *Telemetry) Metrics() *Metrics { return t.metrics }

// ForceFlush exports the spans ended so far (nothing to do with tracing
// off or an injected provider): a benchmark counts a load's export with
// that load.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	if t.sdkTP == nil {
		return nil
	}
	if err := t.sdkTP.ForceFlush(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}

// Shutdown flushes buffered spans to the exporter and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var err error
	if t.sdkTP != nil {
		if e := t.sdkTP.Shutdown(ctx); e != nil {
			err = fmt.Errorf("shut down tracing: %w", e)
		}
	}
	if e := t.mp.Shutdown(ctx); e != nil {
		err = errors.Join(err, fmt.Errorf("shut down metrics: %w", e))
	}
	return err
}

package telemetry

import (
	"context"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newSpanExporter builds the exporter cfg.Traces names (stdout or otlp).
func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	if cfg.Traces == TracesStdout {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(writerOr(cfg.Writer)))
		if err != nil {
			return nil, fmt.Errorf("stdout trace exporter: %w", err)
		}
		return exp, nil
	}
	u, err := otlpURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u))
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter for %s: %w", u, err)
	}
	return exp, nil
}

// otlpURL checks telemetry.endpoint and adds the OTLP traces path when the
// URL has none, so "http://collector:4318" works as people expect.
func otlpURL(endpoint string) (string, error) {
	if endpoint == "" {
		return "", fmt.Errorf("telemetry.endpoint: is required when traces is otlp (e.g. http://127.0.0.1:4318)")
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("telemetry.endpoint: %q is not an http(s)://host:port URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

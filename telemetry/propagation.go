package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// Header is the message header that carries the trace context from server
// to server (S8).
const Header = "Traceparent"

// tc is the W3C Trace Context propagator; an instance, not the global one,
// so nothing else in the process can change how pfrouter propagates. It
// holds no state.
var tc propagation.TraceContext

// Inject returns the W3C traceparent of the span in ctx, "" when there is
// no valid span context (tracing off).
func Inject(ctx context.Context) string {
	c := propagation.MapCarrier{}
	tc.Inject(ctx, c)
	return c["traceparent"]
}

// Extract returns ctx carrying the remote span context of traceparent, so
// spans started from it join the sender's trace. A bad or empty value
// leaves ctx as it is.
func Extract(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return tc.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

package node

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"pfrouter/qmgr"
	"pfrouter/routing"
	"pfrouter/telemetry"
	"pfrouter/tracking"
)

// observer turns the queue manager's events into tracking-log entries,
// metrics and spans (SPEC O3, O4). Every span starts from the traceparent
// the message carries, so the spans of all servers form one trace.
type observer struct {
	server string
	tel    *telemetry.Telemetry
	log    *tracking.Log
}

func (o *observer) event(e qmgr.Event) {
	if e.Kind != "linkstate" {
		o.log.Append(tracking.Event{Kind: e.Kind, QueueID: e.QueueID, OriginID: e.OriginID, MessageID: e.MessageID,
			Recipient: e.Recipient, Details: e.Details})
	}
	ctx := context.Background()
	m := o.tel.Metrics()
	switch e.Kind {
	case "received":
		m.Accepted(ctx)
	case "routed":
		// Decisions are counted here, with the tracking entry every
		// decision makes anyway, not on the decision's own path.
		m.Decision(ctx, e.Rule, e.Took.Seconds())
	case "delivered":
		m.Delivered(ctx, "local")
	case "relayed":
		m.Delivered(ctx, "relayed")
	case "deferred":
		if e.Details["waiting"] != "" {
			m.Queued(ctx) // no route now: waiting for link state
		} else {
			m.Deferred(ctx)
		}
	case "expired":
		m.Expired(ctx)
	case "ndr":
		m.NDR(ctx)
	case "linkstate":
		m.LinkStateChange(ctx)
	}
}

func (o *observer) span(ctx context.Context, traceparent, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx = telemetry.Extract(ctx, traceparent)
	return o.tel.Tracer().Start(ctx, name, trace.WithAttributes(append(attrs, telemetry.KeyServer.String(o.server))...))
}

func (o *observer) Detailed() bool { return o.tel.Tracing() }

func (o *observer) DecisionSample() *atomic.Bool { return o.tel.Metrics().DecisionSample() }

// With tracing off the span methods return "" at once (the message keeps
// the traceparent it carries): no context, span or propagation work on the
// hot path.

func (o *observer) Receive(ctx context.Context, traceparent string, e qmgr.Event) string {
	if !o.tel.Tracing() {
		return ""
	}
	ctx, sp := o.span(ctx, traceparent, telemetry.SpanReceive, telemetry.MessageAttributes(o.server, e.QueueID, e.OriginID, e.MessageID)...)
	defer sp.End()
	return telemetry.Inject(ctx)
}

// Decision records a decision's span; it is counted by its "routed" event
// (event).
func (o *observer) Decision(ctx context.Context, traceparent string, d routing.Decision, _ time.Duration) string {
	if !o.tel.Tracing() {
		return ""
	}
	ctx, sp := o.span(ctx, traceparent, telemetry.SpanRoute)
	defer sp.End()
	telemetry.RecordDecision(sp, d)
	return telemetry.Inject(ctx)
}

func (o *observer) Attempt(ctx context.Context, traceparent, kind, target string, err error) string {
	if !o.tel.Tracing() {
		return ""
	}
	name := telemetry.SpanRelay
	attrs := []attribute.KeyValue{telemetry.KeyNextHop.String(target)}
	if kind == "deliver" {
		name, attrs = telemetry.SpanDeliver, []attribute.KeyValue{telemetry.KeyStore.String(target)}
	}
	ctx, sp := o.span(ctx, traceparent, name, attrs...)
	defer sp.End()
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
	}
	return telemetry.Inject(ctx)
}

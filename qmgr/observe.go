package qmgr

import (
	"context"
	"sync/atomic"
	"time"

	"pfrouter/routing"
)

// DecisionObserver is how the queue manager observes its routing
// decisions for its Tracer. What does not change over the tracer's life
// (whether spans are recorded, where its latency sample flag is) is asked
// once, when the observer is made, so with tracing off a decision costs
// one nil check and one atomic load of a flag that is rarely set: no
// interface call, no clock read, no counter. Decisions are counted by
// their "routed" event (Event.Rule), which the queue manager sends for
// every decision anyway.
type DecisionObserver struct {
	t        Tracer
	detailed bool
	sample   *atomic.Bool
}

// NewDecisionObserver asks t (nil: decisions are not observed) what it
// wants of decisions.
func NewDecisionObserver(t Tracer) *DecisionObserver {
	if t == nil {
		return &DecisionObserver{}
	}
	return &DecisionObserver{t: t, detailed: t.Detailed(), sample: t.DecisionSample()}
}

// Observation is one routing decision being observed: Start before the
// decision, Done after.
type Observation struct {
	o     *DecisionObserver
	start time.Time // zero: not timed
}

// Start begins observing one decision, reading the clock only when the
// tracer asked for this one to be timed (it clears the flag it set).
func (o *DecisionObserver) Start() Observation {
	ob := Observation{o: o}
	if s := o.sample; s != nil && s.Load() && s.CompareAndSwap(true, false) {
		ob.start = time.Now()
	}
	return ob
}

// Detailed says whether the decision should be made with its explanation
// (routing.Decide) because it goes into a span.
func (ob Observation) Detailed() bool { return ob.o.detailed }

// Done hands a detailed decision to the tracer's Decision and returns the
// traceparent to carry on (the tracer's, or traceparent when it gives
// none) and how long the decision took, negative when it was not timed.
func (ob Observation) Done(ctx context.Context, traceparent string, d *routing.Decision) (string, time.Duration) {
	took := time.Duration(-1)
	if !ob.start.IsZero() {
		took = time.Since(ob.start)
	}
	if ob.o.detailed {
		traceparent = keep(traceparent, ob.o.t.Decision(ctx, traceparent, *d, took))
	}
	return traceparent, took
}

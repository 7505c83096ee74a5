package qmgr

import (
	"context"
	"testing"
	"time"

	"pfrouter/routing"
)

// fakeTracer records what an Observation hands it.
type fakeTracer struct {
	detailed, timed bool
	decisions       []time.Duration // took of each Decision call
	decided         []string        // rule of each Decided call
	decidedTook     []time.Duration
}

func (f *fakeTracer) DecisionStart() (bool, bool)                   { return f.detailed, f.timed }
func (f *fakeTracer) Receive(context.Context, string, Event) string { return "" }
func (f *fakeTracer) Attempt(context.Context, string, string, string, error) string {
	return ""
}
func (f *fakeTracer) Decision(_ context.Context, _ string, _ routing.Decision, took time.Duration) string {
	f.decisions = append(f.decisions, took)
	return "00-new"
}
func (f *fakeTracer) Decided(_ context.Context, rule string, took time.Duration) {
	f.decided = append(f.decided, rule)
	f.decidedTook = append(f.decidedTook, took)
}

// With tracing off a decision goes to Decided by its rule and the
// traceparent stays; with tracing on the whole decision goes to Decision
// and its traceparent is carried on. Only sampled decisions are timed
// (took >= 0); the others read no clock (took < 0).
func TestObservation(t *testing.T) {
	d := routing.Decision{Outcome: routing.Deliver, Step2: &routing.Step2{Rule: "lowest-cost"}}
	for _, c := range []struct {
		name            string
		detailed, timed bool
	}{{"off", false, false}, {"off timed", false, true}, {"on", true, false}, {"on timed", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeTracer{detailed: c.detailed, timed: c.timed}
			o := StartDecision(f)
			if o.Detailed() != c.detailed {
				t.Fatalf("Detailed = %v", o.Detailed())
			}
			tp := o.Done(context.Background(), "00-old", &d)
			var took []time.Duration
			switch {
			case c.detailed:
				took = f.decisions
				if tp != "00-new" || len(f.decided) != 0 {
					t.Errorf("traceparent %q, Decided %v: want the tracer's and no Decided", tp, f.decided)
				}
			default:
				took = f.decidedTook
				if tp != "00-old" || len(f.decisions) != 0 || len(f.decided) != 1 || f.decided[0] != "lowest-cost" {
					t.Errorf("traceparent %q, Decision %v, Decided %v: want the old one and the rule", tp, f.decisions, f.decided)
				}
			}
			if len(took) != 1 || (took[0] >= 0) != c.timed {
				t.Errorf("took %v, timed %v", took, c.timed)
			}
		})
	}
	var none Observation = StartDecision(nil)
	if tp := none.Done(context.Background(), "00-old", &d); tp != "00-old" || none.Detailed() {
		t.Errorf("nil tracer: traceparent %q, detailed %v", tp, none.Detailed())
	}
}

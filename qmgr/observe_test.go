package qmgr

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pfrouter/routing"
)

// fakeTracer records what a DecisionObserver hands it.
type fakeTracer struct {
	mu        sync.Mutex
	detailed  bool
	sample    atomic.Bool
	asked     int             // calls of Detailed
	decisions []time.Duration // took of each Decision call
}

func (f *fakeTracer) Detailed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return f.detailed
}
func (f *fakeTracer) DecisionSample() *atomic.Bool                  { return &f.sample }
func (f *fakeTracer) Receive(context.Context, string, Event) string { return "" }
func (f *fakeTracer) Attempt(context.Context, string, string, string, error) string {
	return ""
}
func (f *fakeTracer) Decision(_ context.Context, _ string, _ routing.Decision, took time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, took)
	return "00-new"
}

// With tracing off a decision hands nothing to the tracer and the
// traceparent stays; with tracing on the whole decision goes to Decision
// and its traceparent is carried on. Only the decision after the tracer
// set its sample flag is timed (took >= 0), and timing it clears the flag;
// the others read no clock (took < 0).
func TestObservation(t *testing.T) {
	d := routing.Decision{Outcome: routing.Deliver, Step2: &routing.Step2{Rule: "lowest-cost"}}
	for _, c := range []struct {
		name            string
		detailed, timed bool
	}{{"off", false, false}, {"off timed", false, true}, {"on", true, false}, {"on timed", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeTracer{detailed: c.detailed}
			f.sample.Store(c.timed)
			o := NewDecisionObserver(f)
			ob := o.Start()
			if ob.Detailed() != c.detailed {
				t.Fatalf("Detailed = %v", ob.Detailed())
			}
			if f.sample.Load() {
				t.Error("the sample flag is still set after Start")
			}
			tp, took := ob.Done(context.Background(), "00-old", &d)
			if (took >= 0) != c.timed {
				t.Errorf("took %v, timed %v", took, c.timed)
			}
			switch {
			case c.detailed:
				if tp != "00-new" || len(f.decisions) != 1 || f.decisions[0] != took {
					t.Errorf("traceparent %q, Decision %v: want the tracer's and one Decision taking %v", tp, f.decisions, took)
				}
			default:
				if tp != "00-old" || len(f.decisions) != 0 {
					t.Errorf("traceparent %q, Decision %v: want the old one and no Decision", tp, f.decisions)
				}
			}
			// The flag was taken: the next decision is not timed.
			if _, took := o.Start().Done(context.Background(), "00-old", &d); took >= 0 {
				t.Errorf("second decision timed (%v) without a new sample request", took)
			}
		})
	}
	none := NewDecisionObserver(nil)
	ob := none.Start()
	if tp, took := ob.Done(context.Background(), "00-old", &d); tp != "00-old" || took >= 0 || ob.Detailed() {
		t.Errorf("nil tracer: traceparent %q, took %v, detailed %v", tp, took, ob.Detailed())
	}
}

// Every decision the queue manager makes is a "routed" event with its
// rule, which is what the decision metrics count; the tracer is asked
// whether it wants spans once, not per decision, and a sampled decision's
// time travels in its event.
func TestRoutedEventCarriesRuleAndSample(t *testing.T) {
	h := newHarness(t)
	f := &fakeTracer{}
	h.m.o.Trace = f
	h.m.dobs = NewDecisionObserver(f)
	var mu sync.Mutex
	var routed []Event
	h.m.o.OnEvent = func(e Event) {
		if e.Kind == "routed" {
			mu.Lock()
			routed = append(routed, e)
			mu.Unlock()
		}
	}
	h.accept(t, "alice@q.example", "local@q.example", "remote@q.example")
	f.sample.Store(true)
	h.accept(t, "alice@q.example", "remote@q.example")
	mu.Lock()
	defer mu.Unlock()
	if len(routed) != 3 {
		t.Fatalf("%d routed events, want 3: %+v", len(routed), routed)
	}
	for i, e := range routed {
		if e.Rule == "" || e.Rule == string(routing.NDR) {
			t.Errorf("event %d: rule %q", i, e.Rule)
		}
		if timed := e.Took >= 0; timed != (i == 2) {
			t.Errorf("event %d: took %v; only the decision after the sample request is timed", i, e.Took)
		}
	}
	if f.asked != 1 || len(f.decisions) != 0 {
		t.Errorf("Detailed asked %d times, %d Decision calls: want once and none with tracing off", f.asked, len(f.decisions))
	}
}

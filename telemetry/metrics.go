package telemetry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics holds the instruments. Every method is safe on a nil *Metrics
// (it does nothing), so code under test can run without telemetry.
//
// Prometheus names (the exporter adds _total to counters and the unit to
// the histogram): pfrouter_messages_accepted_total,
// pfrouter_messages_refused_total{reason}, pfrouter_messages_delivered_total{kind},
// pfrouter_messages_queued_total, pfrouter_messages_deferred_total,
// pfrouter_messages_expired_total, pfrouter_messages_ndr_total,
// pfrouter_routing_decisions_total{rule}, pfrouter_routing_decision_duration_seconds,
// pfrouter_queue_depth, pfrouter_linkstate_changes_total,
// pfrouter_sessions_total{proto}, pfrouter_logins_total{proto,result},
// and replication's (replication.go).
type Metrics struct {
	accepted, refused, delivered, queued, deferred, expired, ndr metric.Int64Counter
	linkChanges, sessions, logins                                metric.Int64Counter
	decisionTime                                                 metric.Float64Histogram
	queueDepth                                                   atomic.Pointer[func() int64]
	repl                                                         replicationMetrics

	ruleMu sync.Mutex // serializes adding a rule to rules
	// rules is copied on write: a decision finds its counter with one
	// atomic load and a scan of a handful of entries, no lock (a read
	// lock costs more than a fast routing decision once two cores share
	// it).
	rules atomic.Pointer[[]*ruleCount]
	// timeNext asks for the next decision to be timed: set on every
	// DecisionSampleEvery-th decision of a rule, cleared by the caller
	// that times one (DecisionSample). On a cache line of its own: it is read
	// before every decision and must not share a line with the counters.
	_        [64]byte
	timeNext atomic.Bool
	_        [63]byte

	// Label options are built once per (key, value): building an attribute
	// set per measurement allocates on every message.
	optMu sync.RWMutex
	opts  map[label]metric.MeasurementOption
}

type label struct{ key, value string }

// DecisionSampleEvery is how many routing decisions share one latency
// measurement in the decision-duration histogram: the decision after every
// DecisionSampleEvery-th of each rule is timed (DecisionSample). Every
// decision is counted.
const DecisionSampleEvery = 64

// ruleCount is one rule's decision counter, on a cache line of its own so
// counting two rules from two cores does not share one.
type ruleCount struct {
	rule string
	n    atomic.Int64
	_    [40]byte
}

// option returns the cached measurement option for one label.
func (m *Metrics) option(key, value string) metric.MeasurementOption {
	l := label{key, value}
	m.optMu.RLock()
	o, ok := m.opts[l]
	m.optMu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(attribute.NewSet(attribute.String(key, value)))
	m.optMu.Lock()
	if m.opts == nil {
		m.opts = map[label]metric.MeasurementOption{}
	}
	m.opts[l] = o
	m.optMu.Unlock()
	return o
}

// decisionBuckets suit a routing decision: microseconds to a second.
var decisionBuckets = []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1}

func newMetrics(m metric.Meter) (*Metrics, error) {
	var out Metrics
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	out.accepted = counter("pfrouter.messages.accepted", "Messages accepted by SMTP.")
	out.refused = counter("pfrouter.messages.refused", "Messages or recipients refused by SMTP, by reason.")
	out.delivered = counter("pfrouter.messages.delivered", "Recipients delivered, local (into a store here) or relayed (to the next server).")
	out.queued = counter("pfrouter.messages.queued", "Recipients queued waiting for a route.")
	out.deferred = counter("pfrouter.messages.deferred", "Delivery attempts deferred for a retry.")
	out.expired = counter("pfrouter.messages.expired", "Recipients expired in the queue.")
	out.ndr = counter("pfrouter.messages.ndr", "Non-delivery reports generated.")
	// Decisions are counted in atomics and read at scrape time: an SDK
	// measurement per decision costs more than the decision itself.
	_, err := m.Int64ObservableCounter("pfrouter.routing.decisions", metric.WithDescription("Routing decisions, by the rule taken."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if rs := out.rules.Load(); rs != nil {
				for _, r := range *rs {
					o.Observe(r.n.Load(), out.option("rule", r.rule))
				}
			}
			return nil
		}))
	errs = append(errs, err)
	out.linkChanges = counter("pfrouter.linkstate.changes", "Link-state changes applied.")
	out.sessions = counter("pfrouter.sessions", "Client sessions opened, by protocol.")
	out.logins = counter("pfrouter.logins", "Login attempts, by protocol and result.")
	h, err := m.Float64Histogram("pfrouter.routing.decision.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to compute one routing decision (a sample of one decision in 64 is timed)."), metric.WithExplicitBucketBoundaries(decisionBuckets...))
	errs = append(errs, err)
	out.decisionTime = h
	_, err = m.Int64ObservableGauge("pfrouter.queue.depth", metric.WithDescription("Messages in the queue."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if f := out.queueDepth.Load(); f != nil {
				o.Observe((*f)())
			}
			return nil
		}))
	errs = append(errs, err)
	errs = append(errs, newReplicationMetrics(m, &out.repl)...)
	for _, e := range errs {
		if e != nil {
			return nil, fmt.Errorf("create metric instruments: %w", e)
		}
	}
	return &out, nil
}

func add(ctx context.Context, m *Metrics, c func(*Metrics) metric.Int64Counter, attrs ...attribute.KeyValue) {
	if m == nil {
		return
	}
	switch len(attrs) {
	case 0:
		c(m).Add(ctx, 1)
	case 1:
		c(m).Add(ctx, 1, m.option(string(attrs[0].Key), attrs[0].Value.AsString()))
	default:
		c(m).Add(ctx, 1, metric.WithAttributes(attrs...))
	}
}

// Accepted counts a message accepted by SMTP.
func (m *Metrics) Accepted(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.accepted })
}

// Refused counts a refusal; reason is a short class (e.g. "relay", "size", "auth", "R15"), not free text.
func (m *Metrics) Refused(ctx context.Context, reason string) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.refused }, attribute.String("reason", reason))
}

// Delivered counts a recipient delivered; kind is "local" or "relayed".
func (m *Metrics) Delivered(ctx context.Context, kind string) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.delivered }, attribute.String("kind", kind))
}

// Queued counts a recipient put to wait for a route.
func (m *Metrics) Queued(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.queued })
}

// Deferred counts a delivery attempt deferred for retry.
func (m *Metrics) Deferred(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.deferred })
}

// Expired counts a recipient expired in the queue.
func (m *Metrics) Expired(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.expired })
}

// NDR counts a non-delivery report.
func (m *Metrics) NDR(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.ndr })
}

// Decision counts a routing decision by the rule taken ("" for none) and,
// when seconds >= 0, records how long it took. Callers time the decisions
// DecisionSample asks for and pass a negative seconds for the others:
// reading the clock twice costs as much as a fast decision on a virtual
// machine.
func (m *Metrics) Decision(ctx context.Context, rule string, seconds float64) {
	if m == nil {
		return
	}
	if rule == "" {
		rule = "none"
	}
	if m.ruleCounter(rule).n.Add(1)%DecisionSampleEvery == 0 {
		m.timeNext.Store(true)
	}
	if seconds >= 0 {
		m.decisionTime.Record(ctx, seconds)
	}
}

// DecisionSample is the flag Decision sets once after every
// DecisionSampleEvery-th decision of a rule: the caller times its next decision
// when it finds the flag set and clears it (CompareAndSwap), and passes
// that decision's time to Decision. Reading it costs one atomic load of a
// cache line written once in DecisionSampleEvery decisions. Nil on a nil
// *Metrics.
func (m *Metrics) DecisionSample() *atomic.Bool {
	if m == nil {
		return nil
	}
	return &m.timeNext
}

func (m *Metrics) ruleCounter(rule string) *ruleCount {
	if rs := m.rules.Load(); rs != nil {
		for _, r := range *rs {
			if r.rule == rule {
				return r
			}
		}
	}
	m.ruleMu.Lock()
	defer m.ruleMu.Unlock()
	var list []*ruleCount
	if rs := m.rules.Load(); rs != nil {
		for _, r := range *rs {
			if r.rule == rule {
				return r
			}
		}
		list = *rs
	}
	r := &ruleCount{rule: rule}
	list = append(slices.Clip(list), r)
	m.rules.Store(&list)
	return r
}

// SetQueueDepthFunc registers what the queue-depth gauge reports; it is
// called at each scrape.
func (m *Metrics) SetQueueDepthFunc(f func() int64) {
	if m == nil {
		return
	}
	m.queueDepth.Store(&f)
}

// LinkStateChange counts an applied link-state change.
func (m *Metrics) LinkStateChange(ctx context.Context) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.linkChanges })
}

// Session counts a client session; proto is smtp, imap, pop3 ...
func (m *Metrics) Session(ctx context.Context, proto string) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.sessions }, attribute.String("proto", proto))
}

// Login counts a login attempt; result is "ok" or a short failure class.
func (m *Metrics) Login(ctx context.Context, proto, result string) {
	add(ctx, m, func(m *Metrics) metric.Int64Counter { return m.logins },
		attribute.String("proto", proto), attribute.String("result", result))
}

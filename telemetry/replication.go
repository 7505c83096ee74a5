package telemetry

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// SpanReplicate is one batch of changes applied to a local replica from
// another replica; it carries the folder, both stores and the counts.
const SpanReplicate = "pfrouter.replicate"

// Replication span attributes.
const (
	KeySourceStore   = attribute.Key("pfrouter.replication.source")
	KeyChangesAdded  = attribute.Key("pfrouter.replication.added")
	KeyChangesOthers = attribute.Key("pfrouter.replication.other_changes")
)

// replicationMetrics are public folder replication's instruments
// (docs/replication.md). Prometheus names:
// pfrouter_replication_changes_total{kind} (changes applied from other
// replicas: add, delete, flags, skipped), pfrouter_replication_batches_total
// (batches applied: changes per batch is what batching achieves),
// pfrouter_replication_lag_seconds
// (from a post's commit at its origin to its commit here),
// pfrouter_replication_backlog (replica pairs whose last pull was cut by
// the batch limit: more changes are waiting) and
// pfrouter_replication_failures_total.
type replicationMetrics struct {
	changes, batches, failures metric.Int64Counter
	lag                        metric.Float64Histogram
	backlog                    atomic.Pointer[func() int64]
}

// lagBuckets suit replication: milliseconds on a LAN to minutes after a
// partition.
var lagBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300}

func newReplicationMetrics(m metric.Meter, r *replicationMetrics) []error {
	var errs []error
	var err error
	r.changes, err = m.Int64Counter("pfrouter.replication.changes", metric.WithDescription("Changes applied from other replicas, by kind (add, delete, flags, skipped)."))
	errs = append(errs, err)
	r.batches, err = m.Int64Counter("pfrouter.replication.batches", metric.WithDescription("Batches of changes applied from other replicas (each one commit here)."))
	errs = append(errs, err)
	r.failures, err = m.Int64Counter("pfrouter.replication.failures", metric.WithDescription("Replication pulls that failed (retried with backoff)."))
	errs = append(errs, err)
	r.lag, err = m.Float64Histogram("pfrouter.replication.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from a post's commit in its origin replica to its commit in this replica."), metric.WithExplicitBucketBoundaries(lagBuckets...))
	errs = append(errs, err)
	_, err = m.Int64ObservableGauge("pfrouter.replication.backlog", metric.WithDescription("Replica pairs with more changes waiting at the source."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if f := r.backlog.Load(); f != nil {
				o.Observe((*f)())
			}
			return nil
		}))
	return append(errs, err)
}

// ReplicationApplied counts the changes of one applied batch and records
// the lag of each post added.
func (m *Metrics) ReplicationApplied(ctx context.Context, added, deleted, flags, skipped int, lags []float64) {
	if m == nil {
		return
	}
	if added+deleted+flags+skipped > 0 {
		m.repl.batches.Add(ctx, 1)
	}
	for kind, n := range map[string]int{"add": added, "delete": deleted, "flags": flags, "skipped": skipped} {
		if n > 0 {
			m.repl.changes.Add(ctx, int64(n), m.option("kind", kind))
		}
	}
	for _, s := range lags {
		m.repl.lag.Record(ctx, s)
	}
}

// ReplicationFailed counts a failed pull.
func (m *Metrics) ReplicationFailed(ctx context.Context) {
	if m == nil {
		return
	}
	m.repl.failures.Add(ctx, 1)
}

// SetReplicationBacklogFunc registers what the backlog gauge reports.
func (m *Metrics) SetReplicationBacklogFunc(f func() int64) {
	if m == nil {
		return
	}
	m.repl.backlog.Store(&f)
}

package telemetry

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

// Replication's instruments reach /metrics: changes by kind, batches
// applied (an empty pull is no batch), the lag of each post.
func TestReplicationMetrics(t *testing.T) {
	ctx := context.Background()
	tel := metricsOnly(t)
	m := tel.Metrics()
	m.ReplicationApplied(ctx, 3, 0, 0, 1, []float64{0.01, 0.02, 0.03})
	m.ReplicationApplied(ctx, 2, 1, 0, 0, []float64{0.5, 0.6})
	m.ReplicationApplied(ctx, 0, 0, 0, 0, nil)
	m.ReplicationFailed(ctx)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		`pfrouter_replication_changes_total{kind="add"} 5`,
		`pfrouter_replication_changes_total{kind="skipped"} 1`,
		`pfrouter_replication_changes_total{kind="delete"} 1`,
		"pfrouter_replication_batches_total 2",
		"pfrouter_replication_lag_seconds_count 5",
		"pfrouter_replication_failures_total 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

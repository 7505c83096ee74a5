// Package latency summarises the latencies a load generator measured
// (bench/smtpload, bench/imapload) the same way for every tool.
package latency

import (
	"slices"
	"time"
)

// Summary is a latency distribution in milliseconds (nearest-rank
// percentiles).
type Summary struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Of summarises d, sorting it in place.
func Of(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	p := func(q float64) float64 {
		i := int(q*float64(len(d))+0.999999) - 1
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	return Summary{P50: p(0.50), P90: p(0.90), P99: p(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

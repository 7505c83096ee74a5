package load

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"pfrouter/bench/internal/latency"
)

// Latency is a latency distribution in milliseconds.
type Latency = latency.Summary

func latencyOf(d []time.Duration) Latency { return latency.Of(d) }

// Result is what one run measured.
type Result struct {
	Addr     string  `json:"addr"`
	Conns    int     `json:"conns"`
	Size     int     `json:"size_bytes"`
	StartTLS bool    `json:"starttls"`
	OK       int     `json:"messages_ok"`
	Failed   int     `json:"messages_failed"`
	Elapsed  float64 `json:"elapsed_s"`
	Rate     float64 `json:"msgs_per_s"`
	MBps     float64 `json:"mb_per_s"`
	// Data is DATA command to the 250 after the final dot; Txn is MAIL to
	// that 250 (the whole transaction, RSET excluded).
	Data Latency `json:"data_latency"`
	Txn  Latency `json:"txn_latency"`
	// Errors counts failed messages by reply code ("451") or, when no
	// reply came, by kind ("connect", "io").
	Errors map[string]int `json:"errors"`
	// TimeBound is true when the run stopped on its duration, not its
	// message count.
	TimeBound bool `json:"time_bound"`
}

// WriteJSON writes r as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes r for a person.
func (r *Result) WriteText(w io.Writer) {
	tls := ""
	if r.StartTLS {
		tls = " STARTTLS"
	}
	bound := "count"
	if r.TimeBound {
		bound = "duration"
	}
	fmt.Fprintf(w, "target %s%s, %d connection(s), %d-byte messages (stopped on %s)\n", r.Addr, tls, r.Conns, r.Size, bound)
	fmt.Fprintf(w, "  %d ok, %d failed in %.2fs: %.1f msgs/s, %.2f MB/s\n", r.OK, r.Failed, r.Elapsed, r.Rate, r.MBps)
	fmt.Fprintf(w, "  %-22s p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", "DATA to 250:", r.Data.P50, r.Data.P90, r.Data.P99, r.Data.Max)
	fmt.Fprintf(w, "  %-22s p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", "MAIL to 250 (txn):", r.Txn.P50, r.Txn.P90, r.Txn.P99, r.Txn.Max)
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(w, "  errors:")
		for _, k := range keys {
			fmt.Fprintf(w, " %s=%d", k, r.Errors[k])
		}
		fmt.Fprintln(w)
	}
}

package load

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"pfrouter/bench/internal/latency"
)

// Latency is a latency distribution in milliseconds.
type Latency = latency.Summary

func latencyOf(d []time.Duration) Latency { return latency.Of(d) }

// Result is what a run measured. For login, an operation is one
// connect+LOGIN+LOGOUT; for the fetch modes one FETCH of the whole
// mailbox; for append one APPEND.
type Result struct {
	Mode            string         `json:"mode"`
	Addr            string         `json:"addr"`
	StartTLS        bool           `json:"starttls"`
	Conns           int            `json:"conns"`
	OK              int            `json:"ops_ok"`
	Failed          int            `json:"ops_failed"`
	Errors          map[string]int `json:"errors,omitempty"`
	ElapsedS        float64        `json:"elapsed_s"`
	OpsPerS         float64        `json:"ops_per_s"`
	MailboxMessages uint32         `json:"mailbox_messages,omitempty"`
	Messages        int64          `json:"messages"`
	Bytes           int64          `json:"bytes"`
	MsgsPerS        float64        `json:"msgs_per_s"`
	MBPerS          float64        `json:"mb_per_s"`
	Latency         Latency        `json:"latency"`
}

// WriteJSON prints r as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText prints r for a person.
func (r *Result) WriteText(w io.Writer) {
	tls := ""
	if r.StartTLS {
		tls = " STARTTLS"
	}
	fmt.Fprintf(w, "%s %s%s, %d session(s): %d ok, %d failed in %.2f s = %.1f ops/s\n",
		r.Mode, r.Addr, tls, r.Conns, r.OK, r.Failed, r.ElapsedS, r.OpsPerS)
	if r.Messages > 0 {
		fmt.Fprintf(w, "  %d messages, %.1f MB: %.0f msgs/s, %.1f MB/s\n", r.Messages, float64(r.Bytes)/1e6, r.MsgsPerS, r.MBPerS)
	}
	fmt.Fprintf(w, "  latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  error x%d: %s\n", r.Errors[k], k)
	}
}

// recorder collects the operations of a run from all workers.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	ok, fail int
	msgs     int64
	bytes    int64
	errs     map[string]int
	mbox     uint32
}

func newRecorder() *recorder { return &recorder{errs: map[string]int{}} }

func (r *recorder) setMailboxSize(n uint32) {
	r.mu.Lock()
	r.mbox = max(r.mbox, n)
	r.mu.Unlock()
}

func (r *recorder) add(d time.Duration, msgs, bytes int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs += msgs
	r.bytes += bytes
	if err != nil {
		r.fail++
		// Few distinct error texts: keep the map small.
		if k := err.Error(); len(r.errs) < 20 || r.errs[k] > 0 {
			r.errs[k]++
		}
		return
	}
	r.ok++
	r.lat = append(r.lat, d)
}

func (r *recorder) result(cfg Config, elapsed time.Duration) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := elapsed.Seconds()
	res := &Result{Mode: string(cfg.Mode), Addr: cfg.Addr, StartTLS: cfg.StartTLS, Conns: cfg.Conns, OK: r.ok, Failed: r.fail,
		ElapsedS: s, MailboxMessages: r.mbox, Messages: r.msgs, Bytes: r.bytes, Latency: latencyOf(r.lat)}
	if len(r.errs) > 0 {
		res.Errors = r.errs
	}
	if s > 0 {
		res.OpsPerS = float64(r.ok) / s
		res.MsgsPerS = float64(r.msgs) / s
		res.MBPerS = float64(r.bytes) / 1e6 / s
	}
	return res
}

package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Comparing two setups on a machine other jobs share: one run of each
// tells little (the rates move by 2x with the load), so the benchmarks
// that compare setups start every setup once, run a load against each in
// turn, several rounds, the order alternating, and report medians: of
// each setup's rate and CPU per message, and of the per-round ratios,
// which pair runs minutes apart at most.

// loadRun is one load against one setup.
type loadRun struct {
	rate  float64 // messages accepted per second
	cpuMs float64 // process CPU per message, ms, from the first post until the setup was done with them
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratios are, per round, f(runs[v][round]) over f(runs[base][round]).
func ratios(runs [][]loadRun, v, base int, f func(loadRun) float64) []float64 {
	out := make([]float64, 0, len(runs[v]))
	for r := range min(len(runs[v]), len(runs[base])) {
		if d := f(runs[base][r]); d > 0 {
			out = append(out, f(runs[v][r])/d)
		}
	}
	return out
}

func rateOf(r loadRun) float64 { return r.rate }
func cpuOf(r loadRun) float64  { return r.cpuMs }

// reportRounds logs every run and reports, for each setup, its median
// rate and CPU per message, and for each setup but base the medians of
// its per-round rate and CPU ratios against base (metric names start
// with the setup's short name).
func reportRounds(b *testing.B, names []string, base int, runs [][]loadRun) {
	var sb strings.Builder
	for v, name := range names {
		fmt.Fprintf(&sb, "\n%-16s", name)
		for _, r := range runs[v] {
			fmt.Fprintf(&sb, " %6.0f/s %5.2fms", r.rate, r.cpuMs)
		}
		rates := make([]float64, 0, len(runs[v]))
		cpus := make([]float64, 0, len(runs[v]))
		for _, r := range runs[v] {
			rates, cpus = append(rates, r.rate), append(cpus, r.cpuMs)
		}
		b.ReportMetric(median(rates), name+"_msgs/s")
		b.ReportMetric(median(cpus), name+"_cpu_ms/msg")
		if v == base {
			continue
		}
		rr, cr := ratios(runs, v, base, rateOf), ratios(runs, v, base, cpuOf)
		b.ReportMetric(median(rr), name+"/"+names[base]+"_rate")
		b.ReportMetric(median(cr), name+"/"+names[base]+"_cpu")
		fmt.Fprintf(&sb, "\n%-16s rate ratios %s (median %.2f), CPU ratios %s (median %.2f)", name+"/"+names[base], fmtRatios(rr), median(rr), fmtRatios(cr), median(cr))
	}
	// On stdout: the testing package keeps only ten lines of a
	// benchmark's log.
	fmt.Printf("%s: msgs/s and process CPU ms per message, one column per round:%s\n", b.Name(), sb.String())
}

func fmtRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}

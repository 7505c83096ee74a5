// Package cpuclock measures benchmarks by CPU time as well as wall time.
// On a machine shared by many jobs, wall-clock ns/op drifts by 2x between
// runs (the benchmark waits while other processes hold the CPU); the CPU
// time the benchmark's own thread used drifts much less. Benchmarks in
// bench/ and node/ report it beside ns/op as cpu-ns/op.
package cpuclock

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// Loop runs op(0..b.N-1) timed, locked to one OS thread, and reports the
// thread's CPU time per op as cpu-ns/op (where the OS gives it).
func Loop(b *testing.B, op func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	start, ok := Thread()
	for i := 0; i < b.N; i++ {
		op(i)
	}
	end, _ := Thread()
	b.StopTimer()
	if ok {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// Paired runs a and b alternately in blocks of block calls each, locked to
// one OS thread, n calls of each in all, and returns the CPU time per call
// of each and the median over the blocks of b's time over a's. The two see
// the same machine state within milliseconds of each other, and the median
// drops the blocks a collection, a preemption or a stolen virtual CPU fell
// into, so the ratio holds under load that moves either figure alone by
// 2x. Both get the same i in a block, and which goes first alternates from
// block to block, so neither gains from the other having warmed the
// caches for those i. ok is false where the OS does not give thread CPU
// time.
func Paired(n, block int, a, b func(i int)) (perA, perB time.Duration, ratio float64, ok bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, ok := Thread(); !ok || n <= 0 {
		return 0, 0, 0, ok
	}
	run := func(f func(int), from, k int) time.Duration {
		t0, _ := Thread()
		for i := from; i < from+k; i++ {
			f(i)
		}
		t1, _ := Thread()
		return t1 - t0
	}
	var ta, tb time.Duration
	var ratios []float64
	for done, odd := 0, false; done < n; odd = !odd {
		k := min(block, n-done)
		var da, db time.Duration
		if odd {
			db = run(b, done, k)
			da = run(a, done, k)
		} else {
			da = run(a, done, k)
			db = run(b, done, k)
		}
		ta += da
		tb += db
		if da > 0 {
			ratios = append(ratios, float64(db)/float64(da))
		}
		done += k
	}
	slices.Sort(ratios)
	if len(ratios) > 0 {
		ratio = ratios[len(ratios)/2]
	}
	return ta / time.Duration(n), tb / time.Duration(n), ratio, true
}

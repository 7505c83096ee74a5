// Package cpuclock measures benchmarks by CPU time as well as wall time.
// On a machine shared by many jobs, wall-clock ns/op drifts by 2x between
// runs (the benchmark waits while other processes hold the CPU); the CPU
// time the benchmark's own thread used drifts much less. Benchmarks in
// bench/ and node/ report it beside ns/op as cpu-ns/op.
package cpuclock

import (
	"runtime"
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

// Paired runs a and b alternately in blocks of block calls, locked to one
// OS thread, and returns the CPU time per call of each: the two see the
// same machine state within milliseconds of each other, so their ratio
// holds under load that moves either figure alone by 2x. ok is false where
// the OS does not give thread CPU time.
func Paired(n, block int, a, b func(i int)) (perA, perB time.Duration, ok bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ta, tb time.Duration
	done := 0
	for done < n {
		k := min(block, n-done)
		t0, ok0 := Thread()
		for i := done; i < done+k; i++ {
			a(i)
		}
		t1, _ := Thread()
		for i := done; i < done+k; i++ {
			b(i)
		}
		t2, _ := Thread()
		if !ok0 {
			return 0, 0, false
		}
		ta += t1 - t0
		tb += t2 - t1
		done += k
	}
	if n == 0 {
		return 0, 0, true
	}
	return ta / time.Duration(n), tb / time.Duration(n), true
}

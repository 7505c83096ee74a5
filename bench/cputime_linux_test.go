package bench_test

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time the calling OS thread has used (user and
// system). A benchmark that locks its goroutine to the thread measures with
// it what the loop cost the CPU without the time other processes held it:
// on a machine shared by many jobs, wall-clock ns/op drifts by 2x between
// runs, CPU time per op much less.
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

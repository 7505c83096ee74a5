//go:build !linux

package bench

import "time"

// processCPU is not measured here (cpu-referred/local then reads NaN).
func processCPU() time.Duration { return 0 }

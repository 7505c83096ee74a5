//go:build !linux

package cpuclock

import "time"

// Thread is not measured on this OS: ok is false.
func Thread() (time.Duration, bool) { return 0, false }

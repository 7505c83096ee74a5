package node

import (
	"math"
	"runtime/debug"

	"pfrouter/config"
)

// MemoryLimit is the soft limit of the Go heap for a process running n
// servers of org: limits.memory_per_server each. Several servers may share
// one process (the demo runs five), and each opens its own databases, so the
// limit grows with them.
func MemoryLimit(org *config.Org, n int) int64 {
	per := int64(org.Limits.MemoryPerServer)
	if per <= 0 {
		per = config.DefaultMemoryPerServer
	}
	if n < 1 {
		n = 1
	}
	if per > math.MaxInt64/int64(n) {
		return math.MaxInt64
	}
	return per * int64(n)
}

// ApplyMemoryLimit sets the process's Go heap soft limit to MemoryLimit
// unless the environment's GOMEMLIMIT (read with getenv) already set one,
// and returns the limit in force. Badger's compactions and reads allocate
// in proportion to the database, not to the work at hand; without a limit
// the collector lets the heap reach twice what the last collection left,
// so a backfill of a large folder peaked at a gigabyte.
func ApplyMemoryLimit(org *config.Org, n int, getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	lim := MemoryLimit(org, n)
	debug.SetMemoryLimit(lim)
	return lim
}

package node

import (
	"math"
	"runtime/debug"
	"testing"

	"pfrouter/config"
)

func TestMemoryLimit(t *testing.T) {
	org := func(per int64) *config.Org {
		o := &config.Org{}
		o.Limits.MemoryPerServer = config.ByteSize(per)
		return o
	}
	for _, c := range []struct {
		per  int64
		n    int
		want int64
	}{
		{0, 1, config.DefaultMemoryPerServer},
		{0, 5, 5 * config.DefaultMemoryPerServer},
		{1 << 30, 2, 2 << 30},
		{1 << 30, 0, 1 << 30},
		{math.MaxInt64 / 2, 3, math.MaxInt64},
	} {
		if got := MemoryLimit(org(c.per), c.n); got != c.want {
			t.Errorf("MemoryLimit(%d per server, %d servers) = %d, want %d", c.per, c.n, got, c.want)
		}
	}
}

func TestApplyMemoryLimitLeavesGOMEMLIMIT(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	o := &config.Org{}
	o.Limits.MemoryPerServer = 300 << 20
	if got := ApplyMemoryLimit(o, 2, func(string) string { return "" }); got != 600<<20 || debug.SetMemoryLimit(-1) != 600<<20 {
		t.Fatalf("limit %d, runtime %d; want 600 MiB", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(123 << 20) // as GOMEMLIMIT=123MiB would
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "123MiB"
		}
		return ""
	}
	if got := ApplyMemoryLimit(o, 2, env); got != 123<<20 || debug.SetMemoryLimit(-1) != 123<<20 {
		t.Fatalf("with GOMEMLIMIT set: limit %d, runtime %d; want 123 MiB kept", got, debug.SetMemoryLimit(-1))
	}
}

package store

import (
	"testing"
)

func rangesOf(bits uint32) Ranges {
	var rs Ranges
	for n := uint64(0); n < 32; n++ {
		if bits&(1<<n) != 0 {
			rs = rs.Add(n, n)
		}
	}
	return rs
}

func bitsOf(rs Ranges) uint32 {
	var b uint32
	for _, r := range rs {
		for n := r.Lo; n <= r.Hi && n < 32; n++ {
			b |= 1 << n
		}
	}
	return b
}

// FuzzRangesSetAlgebra checks Intersect and Minus against bit sets (the
// compaction horizon and a resync are computed with them).
func FuzzRangesSetAlgebra(f *testing.F) {
	for _, seed := range [][2]uint32{{0, 0}, {0xffffffff, 0x0f0f0f0f}, {0b1011, 0b0110}, {1 << 31, 1}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b uint32) {
		ra, rb := rangesOf(a), rangesOf(b)
		if got := bitsOf(ra.Intersect(rb)); got != a&b {
			t.Fatalf("%v ∩ %v = %b, want %b", ra, rb, got, a&b)
		}
		if got := bitsOf(ra.Minus(rb)); got != a&^b {
			t.Fatalf("%v \\ %v = %b, want %b", ra, rb, got, a&^b)
		}
		for _, r := range ra.Minus(rb) {
			if r.Lo > r.Hi {
				t.Fatalf("empty range %v", r)
			}
		}
	})
}

func TestRangesMinusAtTheTop(t *testing.T) {
	top := ^uint64(0)
	if got := (Ranges{{0, top}}).Minus(Ranges{{0, top}}); len(got) != 0 {
		t.Fatalf("everything minus everything = %v", got)
	}
	if got := (Ranges{{5, top}}).Minus(Ranges{{10, top}}); len(got) != 1 || got[0] != (Range{5, 9}) {
		t.Fatalf("got %v", got)
	}
}

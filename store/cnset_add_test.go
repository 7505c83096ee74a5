package store

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// addOwned (in place, for a set a transaction owns) gives the same set as
// Add for any order of CNs: in order (the fast path), adjacent, repeated,
// below the last range, and at the top of the CN space.
func TestCNSetAddOwnedMatchesAdd(t *testing.T) {
	cases := [][]uint64{
		{5, 6, 7, 9, 20},
		{10, 3, 4, 11, 2, 12, 1},
		{7, 7, 8, 8, 6},
		{^uint64(0), ^uint64(0) - 1, 1, ^uint64(0) - 3},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var c []uint64
		base := r.Uint64N(1 << 40)
		for range r.IntN(50) {
			c = append(c, base+r.Uint64N(80))
		}
		cases = append(cases, c)
	}
	for _, cns := range cases {
		want, got := CNSet{}, CNSet{"other": {{1, 2}}}
		for _, n := range cns {
			want.Add("o", n, n)
			got.addOwned("o", n)
		}
		if !slices.Equal(want["o"], got["o"]) {
			t.Fatalf("CNs %v: addOwned %v, Add %v", cns, got["o"], want["o"])
		}
		if !slices.Equal(got["other"], Ranges{{1, 2}}) {
			t.Fatalf("CNs %v touched another origin: %v", cns, got["other"])
		}
	}
}

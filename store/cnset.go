package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ChangeID names one change of a public folder, unique in the whole
// organization: the store where the change was made (its origin) and that
// store's change number (CN). CNs of one origin grow (see Store.nextCN); they
// are microseconds since 1970 unless the clock went back, so comparing CNs
// of two origins orders concurrent changes by time (the conflict rule,
// docs/replication.md).
type ChangeID struct {
	Origin string `json:"o"`
	N      uint64 `json:"n"`
}

func (c ChangeID) String() string { return c.Origin + "#" + strconv.FormatUint(c.N, 16) }

// IsZero reports whether c names no change.
func (c ChangeID) IsZero() bool { return c.Origin == "" && c.N == 0 }

// Less orders changes for last-writer-wins: higher CN wins, equal CNs break
// on the origin name. It is a total order on distinct ids.
func (c ChangeID) Less(o ChangeID) bool {
	if c.N != o.N {
		return c.N < o.N
	}
	return c.Origin < o.Origin
}

// ParseChangeID reads the String form.
func ParseChangeID(s string) (ChangeID, error) {
	i := strings.LastIndexByte(s, '#')
	if i <= 0 {
		return ChangeID{}, fmt.Errorf("change id %q: want origin#hex", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 16, 64)
	if err != nil {
		return ChangeID{}, fmt.Errorf("change id %q: %w", s, err)
	}
	return ChangeID{Origin: s[:i], N: n}, nil
}

// Range is the closed CN interval [Lo, Hi].
type Range struct {
	Lo uint64 `json:"lo"`
	Hi uint64 `json:"hi"`
}

// Ranges is a set of CNs of one origin as sorted, disjoint, non-adjacent
// intervals.
type Ranges []Range

// Contains reports whether n is in the set.
func (rs Ranges) Contains(n uint64) bool {
	i, _ := slices.BinarySearchFunc(rs, n, func(r Range, n uint64) int {
		switch {
		case r.Hi < n:
			return -1
		case r.Lo > n:
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i].Lo <= n && n <= rs[i].Hi
}

// Add returns the set with [lo, hi] added (lo <= hi).
func (rs Ranges) Add(lo, hi uint64) Ranges {
	if lo > hi {
		return rs
	}
	out := make(Ranges, 0, len(rs)+1)
	placed := false
	for _, r := range rs {
		switch {
		case r.Hi != ^uint64(0) && r.Hi+1 < lo:
			out = append(out, r)
		case hi != ^uint64(0) && hi+1 < r.Lo:
			if !placed {
				out = append(out, Range{lo, hi})
				placed = true
			}
			out = append(out, r)
		default: // overlapping or adjacent: absorb
			lo, hi = min(lo, r.Lo), max(hi, r.Hi)
		}
	}
	if !placed {
		out = append(out, Range{lo, hi})
		slices.SortFunc(out, func(a, b Range) int {
			switch {
			case a.Lo < b.Lo:
				return -1
			case a.Lo > b.Lo:
				return 1
			}
			return 0
		})
	}
	return out
}

// Union returns rs ∪ o.
func (rs Ranges) Union(o Ranges) Ranges {
	out := slices.Clone(rs)
	for _, r := range o {
		out = out.Add(r.Lo, r.Hi)
	}
	return out
}

// Below returns the part of the set at or below n.
func (rs Ranges) Below(n uint64) Ranges {
	var out Ranges
	for _, r := range rs {
		if r.Lo > n {
			break
		}
		out = append(out, Range{r.Lo, min(r.Hi, n)})
	}
	return out
}

// NextMissing returns the smallest CN >= n not in the set, and false if
// there is none (the set runs to the top of the CN space).
func (rs Ranges) NextMissing(n uint64) (uint64, bool) {
	for _, r := range rs {
		if r.Hi < n {
			continue
		}
		if r.Lo > n {
			return n, true
		}
		if r.Hi == ^uint64(0) {
			return 0, false
		}
		n = r.Hi + 1
	}
	return n, true
}

func (rs Ranges) String() string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.Lo == r.Hi {
			b.WriteString(strconv.FormatUint(r.Lo, 16))
		} else {
			b.WriteString(strconv.FormatUint(r.Lo, 16) + "-" + strconv.FormatUint(r.Hi, 16))
		}
	}
	return b.String()
}

// CNSet is what a replica knows of a folder's changes: per origin store,
// the CNs whose change it has applied, or knows did not touch the folder
// (Exchange's "status information"). A change is missing from a replica
// exactly when its id is not in the replica's CNSet.
type CNSet map[string]Ranges

// Contains reports whether the set holds id.
func (s CNSet) Contains(id ChangeID) bool { return s[id.Origin].Contains(id.N) }

// Add puts [lo, hi] of origin into the set.
func (s CNSet) Add(origin string, lo, hi uint64) { s[origin] = s[origin].Add(lo, hi) }

// addOwned adds one CN to a set whose slices nothing else holds (one
// loaded from the store for a transaction): a CN above every range of its
// origin extends or follows the last range in place, so applying a
// batch's changes in order costs O(1) each instead of a copy of the
// origin's ranges each (a backfilled replica's set has one range per
// change until the batch's claim joins them).
func (s CNSet) addOwned(origin string, n uint64) {
	rs := s[origin]
	if k := len(rs); k > 0 && rs[k-1].Hi != ^uint64(0) {
		switch {
		case n == rs[k-1].Hi+1:
			rs[k-1].Hi = n
			return
		case n > rs[k-1].Hi+1:
			s[origin] = append(rs, Range{n, n})
			return
		}
	}
	s.Add(origin, n, n)
}

// Union adds every CN of o to s.
func (s CNSet) Union(o CNSet) {
	for origin, rs := range o {
		s[origin] = s[origin].Union(rs)
	}
}

// Clone returns an independent copy.
func (s CNSet) Clone() CNSet {
	out := make(CNSet, len(s))
	for k, v := range s {
		out[k] = slices.Clone(v)
	}
	return out
}

// Summary is the set in one line, origins sorted: "s1-pub:1-ff s2-pub:…".
func (s CNSet) Summary() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+":"+s[k].String())
	}
	return strings.Join(parts, " ")
}

// Intersect returns rs ∩ o.
func (rs Ranges) Intersect(o Ranges) Ranges {
	var out Ranges
	i, j := 0, 0
	for i < len(rs) && j < len(o) {
		lo, hi := max(rs[i].Lo, o[j].Lo), min(rs[i].Hi, o[j].Hi)
		if lo <= hi {
			out = append(out, Range{lo, hi})
		}
		if rs[i].Hi < o[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// Minus returns rs \ o.
func (rs Ranges) Minus(o Ranges) Ranges {
	var out Ranges
	j := 0
	for _, r := range rs {
		lo, covered := r.Lo, false
		for j < len(o) && o[j].Hi < lo {
			j++
		}
		for k := j; k < len(o) && o[k].Lo <= r.Hi; k++ {
			if o[k].Lo > lo {
				out = append(out, Range{lo, o[k].Lo - 1})
			}
			if o[k].Hi >= r.Hi {
				covered = true
				break
			}
			lo = o[k].Hi + 1
		}
		if !covered {
			out = append(out, Range{lo, r.Hi})
		}
	}
	return out
}

// Intersect returns the CNs both sets hold.
func (s CNSet) Intersect(o CNSet) CNSet {
	out := CNSet{}
	for origin, rs := range s {
		if in := rs.Intersect(o[origin]); len(in) > 0 {
			out[origin] = in
		}
	}
	return out
}

// Minus returns the CNs of s that o lacks.
func (s CNSet) Minus(o CNSet) CNSet {
	out := CNSet{}
	for origin, rs := range s {
		if d := rs.Minus(o[origin]); len(d) > 0 {
			out[origin] = d
		}
	}
	return out
}

// Equal reports whether s and o hold the same CNs.
func (s CNSet) Equal(o CNSet) bool { return len(s.Minus(o)) == 0 && len(o.Minus(s)) == 0 }

package latency

import (
	"testing"
	"time"
)

func TestOfNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := Of(d)
	if s.P50 != 50 || s.P90 != 90 || s.P99 != 99 || s.Max != 100 {
		t.Fatalf("%+v", s)
	}
	if (Of(nil) != Summary{}) {
		t.Fatal("empty input")
	}
}

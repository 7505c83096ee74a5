package admin

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// R9: a cost is an integer 1–100; R6: store_min_age a duration >= 0.
func TestParseCostAndMinAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{{"1", 1, true}, {" 100 ", 100, true}, {"0", 0, false}, {"101", 0, false}, {"-5", 0, false}, {"ten", 0, false}, {"1e1", 0, false}, {"10.0", 0, false}, {"", 0, false}} {
		got, err := ParseCost(tc.in)
		var fe *FieldError
		if tc.ok != (err == nil) || got != tc.want || (err != nil && (!errors.As(err, &fe) || fe.Field != "cost")) {
			t.Errorf("ParseCost(%q) = %d, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"48h", 48 * time.Hour, true}, {"0", 0, true}, {"90m", 90 * time.Minute, true}, {"-1h", 0, false}, {"soon", 0, false}, {"", 0, false}} {
		got, err := ParseStoreMinAge(tc.in)
		var fe *FieldError
		if tc.ok != (err == nil) || got != tc.want || (err != nil && (!errors.As(err, &fe) || fe.Field != "store_min_age")) {
			t.Errorf("ParseStoreMinAge(%q) = %s, %v", tc.in, got, err)
		}
	}
}

func FuzzParseCost(f *testing.F) {
	for _, s := range []string{"1", "100", "0", "-1", "ten", " 7 ", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCost(s)
		if err != nil {
			return
		}
		if got < 1 || got > 100 {
			t.Fatalf("ParseCost(%q) accepted %d", s, got)
		}
		if again, err := ParseCost(strconv.Itoa(got)); err != nil || again != got {
			t.Fatalf("round trip of %d: %d, %v", got, again, err)
		}
	})
}

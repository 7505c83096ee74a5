package hierarchy

import (
	"strings"
	"testing"
	"time"
)

// The explanation names the rule that passed a store over (R3, R4, R5) and
// the reason one was skipped (R6, R6b); pfrouter route prints these, so
// each must say which rule applied. The decision itself is tested in
// package routing (step1_test.go).
func TestReasonsNameTheirRule(t *testing.T) {
	for rule, want := range map[string]string{RuleLocal: "(R3)", RuleRoutingGroup: "(R4)", RuleFirst: "(R5)"} {
		if got := PassedOver(rule); !strings.Contains(got, want) {
			t.Errorf("PassedOver(%q) = %q, want it to name %s", rule, got, want)
		}
	}
	if got := ReasonUnreachable("ex3"); !strings.Contains(got, "ex3") || !strings.Contains(got, "R6b") {
		t.Errorf("ReasonUnreachable = %q", got)
	}
	created := time.Date(2026, 11, 1, 8, 0, 0, 0, time.FixedZone("x", 3600))
	if got := ReasonYoung(created, time.Hour); !strings.Contains(got, "2026-11-01T07:00:00Z") || !strings.Contains(got, "1h0m0s") {
		t.Errorf("ReasonYoung = %q, want the creation time in UTC and the minimum age", got)
	}
}

// PassedOver runs for every store of a hierarchy on every explained
// decision: it must not allocate.
func TestPassedOverDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = PassedOver(RuleRoutingGroup) }); n != 0 {
		t.Fatalf("PassedOver allocates %v times", n)
	}
}

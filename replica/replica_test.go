package replica

import (
	"strings"
	"testing"
)

// Each replica not chosen is explained by the rule that won (R7, R8, R9);
// the decision itself is tested in package routing (step2_test.go).
func TestPassedOverNamesTheRule(t *testing.T) {
	seen := map[string]bool{}
	for rule, want := range map[string]string{RuleLocal: "(R7)", RuleRoutingGroup: "(R8)", RuleLowestCost: "(R9)"} {
		got := PassedOver(rule)
		if !strings.Contains(got, want) {
			t.Errorf("PassedOver(%q) = %q, want it to name %s", rule, got, want)
		}
		if seen[got] {
			t.Errorf("PassedOver(%q) repeats another rule's reason %q", rule, got)
		}
		seen[got] = true
	}
	if n := testing.AllocsPerRun(100, func() { _ = PassedOver(RuleLowestCost) }); n != 0 {
		t.Fatalf("PassedOver allocates %v times", n)
	}
}

package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pfrouter/config"
)

// allow_referrals defaults to true; false is kept.
func TestAllowReferralsDefault(t *testing.T) {
	org := parse(t, full)
	if !org.Connectors[0].ReferralsAllowed() {
		t.Fatal("allow_referrals must default to true")
	}
	org = parse(t, strings.Replace(full, "    cost: 10\n", "    cost: 10\n    allow_referrals: false\n", 1))
	if org.Connectors[0].ReferralsAllowed() {
		t.Fatal("allow_referrals: false was lost")
	}
}

func TestReferralListParses(t *testing.T) {
	org := parse(t, strings.Replace(full, "  - name: s2\n", "    referral_list: [{server: s2, cost: 7}]\n  - name: s2\n", 1))
	got := org.Servers[0].ReferralList
	if len(got) != 1 || got[0] != (config.ReferralTarget{Server: "s2", Cost: 7}) {
		t.Fatalf("referral_list = %+v", got)
	}
}

// Every bad referral_list entry is reported as file:line: field: problem.
func TestReferralListValidation(t *testing.T) {
	cases := []struct{ list, field, problem string }{
		{"[{server: s9, cost: 5}]", "servers[0].referral_list[0].server", `server "s9" is not defined`},
		{"[{server: s1, cost: 5}]", "servers[0].referral_list[0].server", "own replicas"},
		{"[{server: s2, cost: 0}]", "servers[0].referral_list[0].cost", "0 is outside 1..100"},
		{"[{server: s2, cost: 5}, {server: s2, cost: 6}]", "servers[0].referral_list[1].server", `server "s2" is listed twice`},
		{"[{cost: 5}]", "servers[0].referral_list[0].server", "is required"},
	}
	for _, tc := range cases {
		t.Run(tc.list, func(t *testing.T) {
			bad := strings.Replace(full, "  - name: s2\n", "    referral_list: "+tc.list+"\n  - name: s2\n", 1)
			line := 1 + strings.Count(bad[:strings.Index(bad, "referral_list:")], "\n")
			_, err := config.Parse([]byte(bad), "org.yaml", ".")
			var es config.Errors
			if !errors.As(err, &es) {
				t.Fatalf("want config.Errors, got %v", err)
			}
			want := fmt.Sprintf("org.yaml:%d: %s: ", line, tc.field)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("error\n%s\nwants %q and %q", err, want, tc.problem)
			}
		})
	}
}

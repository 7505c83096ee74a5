package node

import (
	"slices"
	"testing"
)

// Relays between the organization's servers are exempt from SMTP's
// per-address cap: the exemption lists each literal listen address once,
// and never the unspecified address (which would exempt everyone).
func TestSMTPLimitsExemptServerAddresses(t *testing.T) {
	org := parseOrg(t, testOrg)
	org.Servers[0].Listen.SMTP = "0.0.0.0:25"
	org.Servers[1].Listen.SMTP = "mx.test.example:25"
	org.Servers[2].Listen.SMTP = "[::1]:2525"
	got := smtpLimits(org).PerIPExempt
	if !slices.Contains(got, "127.0.0.1") || !slices.Contains(got, "::1") {
		t.Fatalf("exempt %v, want 127.0.0.1 and ::1", got)
	}
	if slices.Contains(got, "0.0.0.0") || len(got) != 2 {
		t.Fatalf("exempt %v, want exactly 127.0.0.1 and ::1", got)
	}
}

package referral

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints a decision for people, like routing.Decision.WriteText:
// every replica, why it was taken or passed over, the choice, path and cost.
func (d Decision) WriteText(w io.Writer) {
	fmt.Fprintf(w, "folder     %s\n", d.Folder)
	fmt.Fprintf(w, "reader at  %s, link state v%d\n", d.At, d.LinkStateVersion)
	if d.ReferralList {
		fmt.Fprintf(w, "rules      %s's referral_list (overrides the computed choice)\n", d.At)
	} else {
		fmt.Fprintf(w, "rules      R7 local, R8 routing group, R9 lowest cost over connectors that allow referrals, R10 reachable\n")
	}
	if len(d.Excluded) > 0 {
		fmt.Fprintf(w, "excluded   %s\n", strings.Join(d.Excluded, ", "))
	}
	fmt.Fprintf(w, "\nreplicas\n")
	for _, c := range d.Candidates {
		state := fmt.Sprintf("cost %d, %d hops", c.Cost, c.Hops)
		if d.ReferralList {
			state = fmt.Sprintf("list cost %d", c.ListCost)
		}
		if !c.Reachable {
			state = "unusable"
		}
		fmt.Fprintf(w, "  %-14s on %-8s %-20s %s\n", c.Store, c.Server, state, c.Reason)
	}
	fmt.Fprintln(w)
	switch d.Outcome {
	case Local:
		fmt.Fprintf(w, "outcome    local: %s on %s (no referral)\n", d.Store, d.Server)
	case Referred:
		fmt.Fprintf(w, "outcome    referred to %s on %s (rule %s), cost %d\n", d.Store, d.Server, d.Rule, d.Cost)
		fmt.Fprintf(w, "path       %s", strings.Join(d.Path, " > "))
		if len(d.Connectors) > 0 {
			fmt.Fprintf(w, " via %s", strings.Join(d.Connectors, ", "))
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintf(w, "outcome    not readable from %s (\\Noselect): %s\n", d.At, d.Reason)
	}
}

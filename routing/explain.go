package routing

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints a decision for people: each step, its candidates and why
// each was skipped, the choice, the path and its cost.
func (d Decision) WriteText(w io.Writer) {
	fmt.Fprintf(w, "recipient  %s\n", d.Recipient)
	switch {
	case d.Folder != "":
		fmt.Fprintf(w, "folder     %s (hierarchy %q)\n", d.Folder, d.Hierarchy)
	case d.User != "":
		fmt.Fprintf(w, "mailbox    user %s\n", d.User)
	case d.Outbound != nil:
		fmt.Fprintf(w, "outside    domain %s is not the organization's: outbound connector\n", d.Outbound.Domain)
	}
	fmt.Fprintf(w, "at         %s, %s, link state v%d\n", d.At, d.Now.UTC().Format("2006-01-02T15:04:05Z"), d.LinkStateVersion)
	for i, a := range d.Attempts {
		fmt.Fprintf(w, "\nstep 1, attempt %d (on %s)\n", i+1, a.At)
		writeStep1(w, &a)
		fmt.Fprintf(w, "  -> %s did not know the folder: excluded, step 1 runs again on %s (R12)\n", a.Store, a.Server)
	}
	if d.Step1 != nil {
		if len(d.Attempts) > 0 {
			fmt.Fprintf(w, "\nstep 1, attempt %d (on %s)\n", len(d.Attempts)+1, d.Step1.At)
		} else {
			fmt.Fprintf(w, "\nstep 1: hierarchy store (on %s, store_min_age %s)\n", d.Step1.At, d.Step1.MinAge)
		}
		writeStep1(w, d.Step1)
	}
	if d.Step2 != nil {
		fmt.Fprintf(w, "\nstep 2: replica (on %s)\n", d.HierarchyServer)
		for _, c := range d.Step2.Considered {
			state := fmt.Sprintf("cost %d, %d hops", c.Cost, c.Hops)
			if !c.Reachable {
				state = "unreachable"
			}
			fmt.Fprintf(w, "  %-14s on %-8s %-20s %s\n", c.Store, c.Server, state, c.Reason)
		}
		if d.Step2.Store != "" {
			fmt.Fprintf(w, "  -> %s on %s (rule %s), cost %d, path %s", d.Step2.Store, d.Step2.Server, d.Step2.Rule, d.Step2.Cost, strings.Join(d.Step2.Path, " > "))
			if len(d.Step2.Connectors) > 0 {
				fmt.Fprintf(w, " via %s", strings.Join(d.Step2.Connectors, ", "))
			}
			fmt.Fprintln(w)
		}
	}
	if o := d.Outbound; o != nil {
		fmt.Fprintf(w, "\noutbound connectors (address space, then cost)\n")
		if len(o.Considered) == 0 {
			fmt.Fprintf(w, "  (no outbound connector's address space covers %s)\n", o.Domain)
		}
		for _, c := range o.Considered {
			state := fmt.Sprintf("via %s, cost %d", c.Source, c.Cost)
			if !c.Usable {
				state = "unusable"
			}
			fmt.Fprintf(w, "  %-14s space %-16q %-22s %s\n", c.Connector, c.Space, state, c.Reason)
		}
	}
	fmt.Fprintln(w)
	switch {
	case d.Outcome == Deliver && d.Outbound != nil:
		fmt.Fprintf(w, "outcome    leave through outbound connector %s on %s to smarthost %s\n", d.Outbound.Connector, d.Server, d.Outbound.Smarthost)
		fmt.Fprintf(w, "route      %s (total cost %d, connector cost included)\n", strings.Join(d.Route, " > "), d.Cost)
		return
	}
	switch d.Outcome {
	case Deliver:
		fmt.Fprintf(w, "outcome    deliver to %s on %s\n", d.Store, d.Server)
		fmt.Fprintf(w, "route      %s (total cost %d)\n", strings.Join(d.Route, " > "), d.Cost)
	case Queue:
		fmt.Fprintf(w, "outcome    queue: %s %s\n", d.Code, d.Reason)
	case NDR:
		fmt.Fprintf(w, "outcome    non-delivery report: %s %s\n", d.Code, d.Reason)
	}
}

func writeStep1(w io.Writer, s *Step1) {
	for _, sk := range s.Skipped {
		fmt.Fprintf(w, "  %-14s skipped: %s\n", sk.Store, sk.Reason)
	}
	if s.UsedYoung {
		fmt.Fprintf(w, "  (every eligible store is younger than store_min_age: young stores used after all, R6)\n")
	}
	if s.Store != "" {
		fmt.Fprintf(w, "  -> %s on %s (rule %s)\n", s.Store, s.Server, s.Rule)
	}
}

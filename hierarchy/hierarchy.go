// Package hierarchy is the vocabulary of routing step 1 (SPEC R2–R6b: of
// the stores that hold a folder's hierarchy, most recently created first,
// pick the one the receiving server sends the message to): the rules a
// store is chosen by, the reasons one is skipped and the explanation's
// shape. The decision itself runs once, in package routing, over the
// directory's compact index and link state's server ids, so that
// `pfrouter route`, the admin API and the queue manager run the same code
// (issue 11: a second, by-name implementation here was kept in step with
// routing's only by a test, and is gone). Package replica is step 2's
// vocabulary.
package hierarchy

import (
	"fmt"
	"time"
)

// Rules a choice can be made by.
const (
	RuleLocal        = "local"         // R3
	RuleRoutingGroup = "routing-group" // R4
	RuleFirst        = "first"         // R5
)

// Skip reasons. The routing package's decision records the same ones
// (its step 1 over the directory index), so they live here once.
const (
	ReasonPending  = "hierarchy not yet replicated"
	ReasonExcluded = "excluded: did not know the folder on an earlier attempt (R12)"
)

// ReasonUnreachable is the skip reason of a store whose server link state
// cannot reach.
func ReasonUnreachable(server string) string {
	return fmt.Sprintf("server %s unreachable over link state (R6b)", server)
}

// ReasonYoung is the skip reason of a store younger than store_min_age.
func ReasonYoung(created time.Time, minAge time.Duration) string {
	return fmt.Sprintf("created %s, younger than store_min_age %s (R6)", created.UTC().Format(time.RFC3339), minAge)
}

// Skip records a candidate that was not eligible, and why.
type Skip struct {
	Store  string `json:"store"`
	Reason string `json:"reason"`
}

// PassedOver is the skip reason of an eligible store not chosen by rule.
// It returns constant strings: it runs for every store of a
// hierarchy on every decision, so it must not allocate.
func PassedOver(rule string) string {
	switch rule {
	case RuleLocal:
		return "passed over: a store on the local server is preferred (R3)"
	case RuleRoutingGroup:
		return "passed over: an earlier-listed store in the local routing group is preferred (R4)"
	default:
		return "passed over: the first store in the list is taken (R5)"
	}
}

// Package replica is the vocabulary of routing step 2 (SPEC R7–R10: on the
// server of the hierarchy store chosen in step 1, pick the folder's content
// replica: local, else in the same routing group, else the reachable one
// with the lowest-cost path over link state): the rules a replica is chosen
// by, the reasons recorded for the others and the explanation's shape. The
// decision runs once, in package routing, over the directory index and
// link state's server ids; mail routing and IMAP referrals (package
// referral, through routing.ChooseReplica) share it. Package hierarchy is
// step 1's vocabulary.
package replica

// Rules a choice can be made by.
const (
	RuleLocal        = "local"         // R7
	RuleRoutingGroup = "routing-group" // R8
	RuleLowestCost   = "lowest-cost"   // R9
)

// Reasons a replica is given in Considered. The routing package's decision
// records the same ones (its step 2 over the directory index).
const (
	ReasonUnreachable = "unreachable: no path of up connectors, or its server is down (R10)"
	ReasonChosen      = "chosen"
)

// Considered is one replica and what step 2 made of it.
type Considered struct {
	Store     string `json:"store"`
	Server    string `json:"server"`
	Reachable bool   `json:"reachable"`
	Cost      int    `json:"cost"`
	Hops      int    `json:"hops"`
	Reason    string `json:"reason,omitempty"`
}

// PassedOver is the reason of a reachable replica not chosen by rule: a
// constant string, so recording it does not allocate.
func PassedOver(rule string) string {
	switch rule {
	case RuleLocal:
		return "passed over: a replica on the hierarchy store's server is preferred (R7)"
	case RuleRoutingGroup:
		return "passed over: a replica in the same routing group is preferred (R8)"
	default:
		return "passed over: a lower-cost (or equal-cost, earlier by hops/name) replica was chosen (R9)"
	}
}

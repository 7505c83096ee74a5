// Package routing decides where a message for one recipient goes next. It
// ties the two routing steps together (SPEC section 2): resolve the address
// in the directory (R1), apply the folder's mail-enabled state, size limits,
// restrictions and permissions (R11, R15, R17), pick a hierarchy store
// (package hierarchy, step 1), then on that store's server a replica
// (package replica, step 2), with loop and hop checks (R14). Mail to users
// goes to their mailbox store's server (S4).
//
// Everything here is a pure function of a directory snapshot, a link-state
// graph, the tunables, the time and the message's routing state: the queue
// manager calls it for each recipient, `pfrouter route` prints what it
// returns, and neither can disagree with the other.
package routing

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/hierarchy"
	"pfrouter/linkstate"
	"pfrouter/permissions"
	"pfrouter/replica"
)

// Outcome is what happens to the recipient.
type Outcome string

const (
	Deliver Outcome = "deliver" // to a store on a server, along Route
	Queue   Outcome = "queue"   // no reachable destination now; wait for link state to change
	NDR     Outcome = "ndr"     // fail with Code and Reason
)

// Params are the organization's routing tunables in force.
type Params struct {
	MinAge   time.Duration
	HopLimit int
	Spread   bool
}

// Input is one recipient of one message, as seen by the deciding server.
type Input struct {
	At        string // the server deciding
	Recipient string
	Sender    string // envelope sender; "" is the null sender
	// SenderUser is the authenticated user's name; "" means the sender acts
	// as Anonymous (R17).
	SenderUser string
	Size       int64  // message size in bytes, 0 if not known yet
	MessageID  string // spreads equal-cost load (R9 spread mode)
	Hops       int    // server hops so far, counted like Received headers (R14)
	// Stage and Dest are the recipient's routing stage as it arrived at At
	// and that stage's destination (envelope.Recipient.Dest), and Visits
	// the servers it left before: R14 compares them.
	Stage    string
	Dest     string
	Visits   []envelope.Visit
	Excluded []string // hierarchy stores that did not know the folder (R12)
	Now      time.Time
}

// Step1 explains the hierarchy-store choice.
type Step1 struct {
	Store     string           `json:"store,omitempty"`
	Server    string           `json:"server,omitempty"`
	Rule      string           `json:"rule,omitempty"`
	Skipped   []hierarchy.Skip `json:"skipped"`
	UsedYoung bool             `json:"used_young,omitempty"`
	At        string           `json:"at"` // the server that ran step 1
	MinAge    string           `json:"store_min_age"`
}

// Step2 explains the replica choice.
type Step2 struct {
	Store      string               `json:"store,omitempty"`
	Server     string               `json:"server,omitempty"`
	Rule       string               `json:"rule,omitempty"`
	Cost       int                  `json:"cost"`
	Path       []string             `json:"path,omitempty"` // hierarchy server .. replica server, bridgeheads included
	Connectors []string             `json:"connectors,omitempty"`
	Considered []replica.Considered `json:"considered"`
}

// Decision is the full explanation of one routing decision.
type Decision struct {
	Recipient string    `json:"recipient"`
	Folder    string    `json:"folder,omitempty"`
	Hierarchy string    `json:"hierarchy_name,omitempty"`
	User      string    `json:"user,omitempty"`
	At        string    `json:"at"`
	Now       time.Time `json:"now"`
	Outcome   Outcome   `json:"outcome"`
	Step1     *Step1    `json:"hierarchy,omitempty"`
	// Attempts lists earlier step-1 choices whose store did not know the
	// folder (R12), in order.
	Attempts []Step1 `json:"rerouted,omitempty"`
	Step2    *Step2  `json:"replica,omitempty"`
	// Store and Server are the final destination when Outcome is Deliver.
	Store  string `json:"store,omitempty"`
	Server string `json:"server,omitempty"`
	// Route is the whole server path from At to Server.
	Route            []string `json:"route,omitempty"`
	Cost             int      `json:"cost"`
	Excluded         []string `json:"excluded,omitempty"`
	Code             string   `json:"code,omitempty"` // enhanced status code (RFC 3463)
	Reason           string   `json:"reason,omitempty"`
	LinkStateVersion uint64   `json:"linkstate_version"`
	// HierarchyServer is the server of the hierarchy store step 1 chose:
	// step 2 runs there in production, so the queue manager sends the
	// message there first.
	HierarchyServer string `json:"hierarchy_server,omitempty"`
	// Outbound is set for an address outside the organization: the
	// outbound connector chosen (Server is its source server).
	Outbound *Outbound `json:"outbound,omitempty"`
}

// Rule is the rule that decided d, for the decision metrics: step 2's,
// else step 1's, else "mailbox" for a delivered user's mail, else the
// outcome.
func (d *Decision) Rule() string {
	switch {
	case d.Step2 != nil && d.Step2.Rule != "":
		return d.Step2.Rule
	case d.Step1 != nil && d.Step1.Rule != "":
		return d.Step1.Rule
	case d.User != "" && d.Outcome == Deliver:
		return "mailbox"
	default:
		return string(d.Outcome)
	}
}

// Check is a recipient-level refusal that SMTP can give at RCPT time.
type Check struct {
	Code   string // enhanced status code
	Reason string
	Perm   bool // permanent (5xx) versus transient
}

func (c *Check) Error() string { return c.Code + " " + c.Reason }

// Resolved is a recipient that passed the checks.
type Resolved struct {
	Folder *directory.Folder
	User   *directory.User
}

// CheckRecipient applies the rules that do not depend on link state: R1
// (address), R15 (mail-enabled), R11 (size, accept/reject lists) and R17
// (permissions of the sender's principal). smtpd calls it at RCPT; Decide
// calls it first.
func CheckRecipient(snap *directory.Snapshot, in Input) (Resolved, *Check) {
	e, err := snap.Resolve(in.Recipient)
	if c := resolveCheck(&in, err); c != nil {
		return Resolved{}, c
	}
	if e.User != nil {
		return Resolved{User: e.User}, nil
	}
	if c := checkFolder(e.Folder, &in, permissions.RoleFor(e.Folder.Permissions, in.SenderUser, in.SenderUser != "")); c != nil {
		return Resolved{}, c
	}
	return Resolved{Folder: e.Folder}, nil
}

// resolveCheck maps an address lookup's error to the refusal (R1).
func resolveCheck(in *Input, err error) *Check {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, directory.ErrNotAccepted):
		return &Check{"5.7.1", "relay access denied: " + domainOf(in.Recipient) + " is not a domain of this organization", true}
	case errors.Is(err, directory.ErrBadAddress):
		return &Check{"5.1.3", "bad recipient address syntax", true}
	default:
		return &Check{"5.1.1", "recipient address rejected: no such folder or user", true}
	}
}

// checkFolder applies R15, R11 and R17 to a resolved folder; role is the
// sender's (permissions.RoleFor).
func checkFolder(f *directory.Folder, in *Input, role permissions.Role) *Check {
	if !f.MailEnabled {
		return &Check{"5.1.1", "recipient address rejected: public folder " + f.Path + " is not mail-enabled (R15)", true}
	}
	if f.MaxMessageSize > 0 && in.Size > f.MaxMessageSize {
		return &Check{"5.2.3", "message too large for public folder " + f.Path + " (R11)", true}
	}
	if c := restrictions(f, in); c != nil {
		return c
	}
	if !permissions.Of(role).CreateItems {
		who := "Anonymous"
		if in.SenderUser != "" {
			who = in.SenderUser
		}
		return &Check{"5.7.1", who + " (role " + string(role) + ") may not post to public folder " + f.Path + " (R17)", true}
	}
	return nil
}

func restrictions(f *directory.Folder, in *Input) *Check {
	match := func(list []string) bool { return senderMatches(list, in.Sender, in.SenderUser) }
	if match(f.RejectFrom) {
		return &Check{"5.7.1", "sender is not allowed to post to " + f.Path + " (reject_from, R11)", true}
	}
	if len(f.AcceptFrom) > 0 && !match(f.AcceptFrom) {
		return &Check{"5.7.1", "sender is not in the accept list of " + f.Path + " (accept_from, R11)", true}
	}
	return nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

func decideUser(snap *directory.Snapshot, g *linkstate.Graph, d Decision, u *directory.User) Decision {
	d.User = u.Name
	if u.Server == d.At {
		d.Outcome, d.Store, d.Server, d.Route = Deliver, u.MailboxStore, u.Server, []string{d.At}
		return d
	}
	path, ok := g.Path(d.At, u.Server)
	if !ok || !g.Reachable(d.At, u.Server) {
		return d.wait("4.4.1", "mailbox server "+u.Server+" of "+u.Name+" is unreachable now; waiting for link state")
	}
	d.Outcome, d.Store, d.Server, d.Route, d.Cost = Deliver, u.MailboxStore, u.Server, path.Servers, path.Cost
	return d
}

// LoopCheck applies R14 to a recipient arriving at in.At: a message over
// the hop limit, or a recipient that comes back to a server it already
// left in the same stage for the same destination, is a loop. Passing a
// server twice is not a loop in itself: step 1 may send a message from
// bridgehead a1 to the hierarchy store's server a2, and step 2 back
// through a1 to a replica in another routing group (a1, a2, a1, b1).
func LoopCheck(p Params, in Input) *Check { return loopCheck(p, &in) }

func loopCheck(p Params, in *Input) *Check {
	if p.HopLimit > 0 && in.Hops > p.HopLimit {
		return &Check{"5.4.6", fmt.Sprintf("hop limit of %d exceeded (R14)", p.HopLimit), true}
	}
	for _, v := range in.Visits {
		if v.Server == in.At && v.Stage == in.Stage && v.Dest == in.Dest {
			return &Check{"5.4.6", "routing loop detected: the message came back to " + in.At + " " + stageWords(in.Stage, in.Dest) + " (R14)", true}
		}
	}
	return nil
}

func stageWords(stage, dest string) string {
	switch stage {
	case envelope.StageHierarchy:
		return "on its way to hierarchy store " + dest
	case envelope.StageTarget:
		return "on its way to store " + dest
	}
	return "before any routing decision"
}

func (d Decision) fail(c *Check) Decision {
	d.Outcome, d.Code, d.Reason = NDR, c.Code, c.Reason
	return d
}

func (d Decision) wait(code, reason string) Decision {
	d.Outcome, d.Code, d.Reason = Queue, code, reason
	return d
}

// Package referral decides which replica a reader of a public folder is
// referred to when the folder has no replica on the reader's server (issue
// 13, Exchange 2003 public folder referrals). It is pure, like package
// routing: a function of the directory snapshot, the link-state graph, the
// reader's server and the folder.
//
// The computed choice is routing step 2 (R7–R10), the routing decision's
// own code (routing.ChooseReplica), run on the reader's server over link
// state without the connectors that forbid referrals
// (linkstate.Graph.Referrals). A server's custom referral_list
// replaces it: only the listed servers, by listed cost. imapd asks for a
// decision when a folder is selected and again, excluding servers that
// failed, when a referred session fails over; `pfrouter route --read`
// prints the same decision.
package referral

import (
	"hash/fnv"
	"slices"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/replica"
	"pfrouter/routing"
)

// Outcome is how the folder is read.
type Outcome string

const (
	Local    Outcome = "local"    // a replica on the reader's server
	Referred Outcome = "referred" // read from Server's replica
	None     Outcome = "none"     // no replica can be read now: \Noselect
)

// RuleReferralList is the rule of a choice made by a custom referral list.
const RuleReferralList = "referral-list"

// Candidate is one replica and what the decision made of it.
type Candidate struct {
	replica.Considered
	// ListCost is the referral_list cost when a list decided.
	ListCost int `json:"list_cost,omitempty"`
}

// Decision explains a read referral.
type Decision struct {
	Folder     string      `json:"folder"`
	At         string      `json:"at"`
	Outcome    Outcome     `json:"outcome"`
	Store      string      `json:"store,omitempty"`
	Server     string      `json:"server,omitempty"`
	Rule       string      `json:"rule,omitempty"`
	Cost       int         `json:"cost"`
	Path       []string    `json:"path,omitempty"`
	Connectors []string    `json:"connectors,omitempty"`
	Candidates []Candidate `json:"candidates"`
	// ReferralList says the server's custom referral list decided.
	ReferralList bool     `json:"referral_list,omitempty"`
	Excluded     []string `json:"excluded,omitempty"`
	Reason       string   `json:"reason,omitempty"`
	// LinkStateVersion is the version of the graph decided on.
	LinkStateVersion uint64 `json:"linkstate_version"`
}

// Reasons given to candidates the rules cannot use.
const (
	ReasonNoReferrals = "reachable for mail only across connectors with allow_referrals: false; not usable for referrals"
	ReasonExcluded    = "excluded: its server failed for this session; the next-best replica is used"
	ReasonNotListed   = "not in this server's referral_list"
	ReasonDown        = "its server is down"
)

// Decide chooses the replica a reader on server at reads folder f from.
// exclude lists servers that failed for the caller (a session failing
// over): they are passed over as if unreachable.
func Decide(snap *directory.Snapshot, g *linkstate.Graph, at string, f *directory.Folder, exclude []string) Decision {
	d := Decision{Folder: f.Path, At: at, LinkStateVersion: g.Version(), Candidates: []Candidate{}, Excluded: slices.Clone(exclude)}
	reps := snap.Replicas(f.Key)
	cands := make([]holder, 0, len(reps))
	for _, r := range reps {
		if st := snap.Store(r.Store); st != nil {
			cands = append(cands, holder{Store: st.Name, Server: st.Server, RoutingGroup: st.RoutingGroup})
		}
	}
	if len(cands) == 0 {
		d.Outcome, d.Reason = None, "public folder "+f.Path+" has no replica"
		return d
	}
	// A local replica is always read first (R7), list or not.
	for _, c := range cands {
		if c.Server == at {
			d.Outcome, d.Store, d.Server, d.Rule, d.Path = Local, c.Store, c.Server, replica.RuleLocal, []string{at}
			for _, o := range cands {
				con := replica.Considered{Store: o.Store, Server: o.Server, Reachable: true, Reason: "passed over: a replica on the reader's server is read first (R7)"}
				if o == c {
					con.Reason = "chosen"
				}
				d.Candidates = append(d.Candidates, Candidate{Considered: con})
			}
			return d
		}
	}
	if srv := snap.Server(at); srv != nil && len(srv.ReferralList) > 0 {
		return byList(d, g, srv, cands, exclude)
	}
	s2, found := routing.ChooseReplica(snap, g.Referrals(), at, f.Key, exclude)
	for _, con := range s2.Considered {
		if !con.Reachable {
			switch {
			case slices.Contains(exclude, con.Server):
				con.Reason = ReasonExcluded
			case g.Reachable(at, con.Server):
				con.Reason = ReasonNoReferrals
			}
		}
		d.Candidates = append(d.Candidates, Candidate{Considered: con})
	}
	if !found {
		d.Outcome, d.Reason = None, noneReason(f, d.Candidates)
		return d
	}
	d.Outcome, d.Store, d.Server, d.Rule, d.Cost = Referred, s2.Store, s2.Server, s2.Rule, s2.Cost
	d.Path, d.Connectors = s2.Path, s2.Connectors
	return d
}

// holder is a store holding a replica of the folder being read.
type holder struct{ Store, Server, RoutingGroup string }

// byList applies a custom referral list: listed servers that hold a
// replica and are neither down nor excluded, lowest listed cost first, then
// list order. Link-state paths and connector policy do not apply: the
// administrator chose these servers.
func byList(d Decision, g *linkstate.Graph, srv *directory.Server, cands []holder, exclude []string) Decision {
	d.ReferralList = true
	best, bestCost, bestPos := -1, 0, 0
	for i, c := range cands {
		con := Candidate{Considered: replica.Considered{Store: c.Store, Server: c.Server}}
		pos := slices.IndexFunc(srv.ReferralList, func(t config.ReferralTarget) bool { return t.Server == c.Server })
		switch {
		case pos < 0:
			con.Reason = ReasonNotListed
		case slices.Contains(exclude, c.Server):
			con.Reason = ReasonExcluded
		case g.ServerDown(c.Server):
			con.Reason = ReasonDown
		default:
			con.Reachable = true
			con.ListCost = srv.ReferralList[pos].Cost
			con.Cost = con.ListCost
			if best < 0 || con.ListCost < bestCost || (con.ListCost == bestCost && pos < bestPos) {
				best, bestCost, bestPos = i, con.ListCost, pos
			}
		}
		d.Candidates = append(d.Candidates, con)
	}
	if best < 0 {
		d.Outcome, d.Reason = None, "no replica is on a live server of "+d.At+"'s referral_list"
		return d
	}
	for i := range d.Candidates {
		if i == best {
			d.Candidates[i].Reason = "chosen"
		} else if d.Candidates[i].Reachable {
			d.Candidates[i].Reason = "passed over: a lower listed cost (or an earlier entry) in the referral_list was chosen"
		}
	}
	d.Outcome, d.Store, d.Server, d.Rule, d.Cost = Referred, cands[best].Store, cands[best].Server, RuleReferralList, bestCost
	d.Path = []string{d.At, cands[best].Server}
	return d
}

func noneReason(f *directory.Folder, cs []Candidate) string {
	for _, c := range cs {
		if c.Reason == ReasonNoReferrals {
			return "no replica of " + f.Path + " is reachable without crossing a connector with allow_referrals: false"
		}
	}
	return "no replica of " + f.Path + " is reachable now (R10)"
}

// FolderByPath finds a public folder by path, preferring the MAPI tree
// (the one IMAP shows under "Public Folders/") when several hierarchies
// hold the path; nil if none does.
func FolderByPath(snap *directory.Snapshot, path string) *directory.Folder {
	var found *directory.Folder
	for _, f := range snap.Folders() {
		if f.Path != path {
			continue
		}
		if f.TLH == "mapi" {
			return f
		}
		if found == nil {
			found = f
		}
	}
	return found
}

// UIDValidity is the UIDVALIDITY a referred session shows for a folder
// whose replica in store has UIDVALIDITY uv. Replicas number their posts
// independently, and two stores can give a folder the same UIDVALIDITY
// (it is a per-database counter), so a client that reconnects after a
// failover must see a value that changes with the replica: uv mixed with
// the store's name. The same replica always gives the same value, so a
// client's cache survives reconnecting to it; two replicas collide only
// when their raw values differ by exactly the XOR of their names' hashes.
func UIDValidity(store string, uv uint32) uint32 {
	h := fnv.New32a()
	h.Write([]byte(store))
	v := uv ^ h.Sum32()
	if v == 0 {
		v = 1 // 0 is not a valid UIDVALIDITY
	}
	return v
}

package routing

import (
	"pfrouter/directory"
	"pfrouter/linkstate"
)

// ChooseReplica is step 2 (R7–R10) as a reader's server runs it for public
// folder referrals (package referral): the replicas of the folder with key
// folderKey, from server at over graph g (readers use
// linkstate.Graph.Referrals), replicas on servers in exclude passed over as
// unreachable, no spread. It is the routing decision's step 2, the same
// code, with the explanation recorded: Considered (every replica and why),
// Path (at to the chosen replica's server) and Connectors. found is false
// when the folder is unknown or no replica can be reached.
func ChooseReplica(snap *directory.Snapshot, g *linkstate.Graph, at, folderKey string, exclude []string) (s Step2, found bool) {
	x := snap.Index()
	fi, ok := x.FolderID(folderKey)
	if !ok {
		return Step2{}, false
	}
	b := bind(x, g)
	var buf [64]int32
	route, found := step2(x, b, Params{}, viewOf(x, b, at), &x.Folders[fi], "", exclude, &s, buf[:0], &recorder{})
	if found {
		s.Path = b.names(x, make([]string, 0, len(route)), route, at)
	}
	return s, found
}

package replication

import (
	"slices"

	"pfrouter/config"
	"pfrouter/directory"
)

// Pair is one folder a local replica pulls from another replica.
type Pair struct {
	Hierarchy, Path string
	FolderKey       string
	// FolderID is the folder's identity (directory.Folder.ID): a pull
	// names it, and each end reads and writes only the replica of that
	// identity (a path may pass to another folder, see folders.go).
	FolderID     string
	Local        string // the store on this server that receives
	Source       string // the store that sends
	SourceServer string
}

// Plan lists, by source server, every pair of replicas of the same folder
// where the receiving replica is on server self: each replica pulls from
// every other (a change made anywhere reaches everyone even if its origin
// is unreachable later, and no replica is a single point of failure).
// Sources on self are listed under self. The result is deterministic.
func Plan(snap *directory.Snapshot, self string) map[string][]Pair {
	out := map[string][]Pair{}
	for _, local := range snap.StoresOn(self) {
		if local.Kind != config.StorePublic {
			continue
		}
		for _, rep := range snap.ReplicasIn(local.Name) {
			f := snap.Folder(rep.FolderKey)
			if f == nil {
				continue
			}
			for _, other := range snap.Replicas(rep.FolderKey) {
				if other.Store == local.Name {
					continue
				}
				st := snap.Store(other.Store)
				if st == nil {
					continue
				}
				out[st.Server] = append(out[st.Server], Pair{Hierarchy: f.Hierarchy, Path: f.Path, FolderKey: f.Key, FolderID: f.ID,
					Local: local.Name, Source: st.Name, SourceServer: st.Server})
			}
		}
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b Pair) int {
			if a.FolderKey != b.FolderKey {
				if a.FolderKey < b.FolderKey {
					return -1
				}
				return 1
			}
			if a.Local+"\x00"+a.Source < b.Local+"\x00"+b.Source {
				return -1
			}
			return 1
		})
	}
	return out
}

// mayPull reports whether server peer may read folder key from store
// source on server self: source is a public store of self holding a
// replica of the folder, and peer holds one too (a server only ever
// receives the folders it replicates).
func mayPull(snap *directory.Snapshot, self, peer, folderKey, source string) bool {
	st := snap.Store(source)
	if st == nil || st.Server != self || st.Kind != config.StorePublic {
		return false
	}
	src, dst := false, false
	for _, r := range snap.Replicas(folderKey) {
		if r.Store == source {
			src = true
		}
		if o := snap.Store(r.Store); o != nil && o.Server == peer {
			dst = true
		}
	}
	return src && dst
}

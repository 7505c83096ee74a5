package replication

import (
	"time"

	"pfrouter/directory"
	"pfrouter/store"
)

// Both ends of a pull read every folder they share on every request: the
// puller its CN set and resync cursor, the source the folder's directory
// entries, the replica's identity and its change log. With thousands of
// folders and a stream of posts into one of them, that was most of the
// replication CPU (bench/README.md, "Many folders, one busy"). Each end
// therefore remembers, per folder, what it last read while nothing it
// depends on changed: the directory's version, the store's mailbox
// generation and the replica's change version (store.ChangeVersion). A
// remembered answer is used for at most memoMaxAge, so a change path that
// failed to bump a version delays replication by that much, never more,
// and never loses a change.
const memoMaxAge = 5 * time.Second // Options.MemoMaxAge

// memoKey names one replica pair of a request.
type memoKey struct{ folder, source, local, id string }

// quietMemo is the source's memory of a connection: folders whose last
// answer was empty (nothing the puller lacked) and what it was read under.
type quietMemo map[memoKey]quietEntry

type quietEntry struct {
	snap *directory.Snapshot
	gen  uint64 // store.MailboxGeneration
	ver  uint64 // store.ChangeVersion of the source replica
	have store.CNSet
	at   time.Time
}

// quiet reports whether the answer for f is still empty: the same CN set
// asked under the same directory version, mailbox generation and change
// version, recently.
func (m quietMemo) quiet(k memoKey, f pullFolder, snap *directory.Snapshot, gen, ver uint64, now time.Time, maxAge time.Duration) bool {
	if m == nil || f.Resync != nil {
		return false
	}
	e, ok := m[k]
	return ok && snap.SameVersion(e.snap) && e.gen == gen && e.ver == ver && now.Sub(e.at) < maxAge &&
		(sameSet(f.Have, e.have) || f.Have.Equal(e.have))
}

// pullMemo is the puller's memory of one pull loop: each pair's PullSet
// and resync cursor and the versions they were read under.
type pullMemo map[memoKey]pullEntry

type pullEntry struct {
	gen, ver uint64
	have     store.CNSet
	cursor   *store.ResyncCursor
	at       time.Time
}

package store

import "sync"

// recentPosts keeps the posts most recently added to public folders here
// (change record, uid and body), bounded in bytes and count, for the
// replication source: a replica pulling a stream of posts asks for the
// ones committed in the last milliseconds, and ChangesSince takes them
// from here instead of decoding the change record, reading the message
// record and reading the body back from badger (block seeks and
// decompression once they left the memtable).
//
// An entry is put while its transaction is still open, so it may name a
// change that never commits (the transaction failed; its CN is never
// reused). It is only ever used for a change that ChangesSince found in
// its log, in its own read view, held under the same uid: the cache never
// makes a change or a post visible, it only saves reading one the view
// already shows. Bodies are copies, never the caller's buffer.
type recentPosts struct {
	// served holds the mailboxes a replica has pulled posts of since this
	// store opened: only their posts are kept (a folder with one replica,
	// or a server that does not replicate, pays nothing).
	served sync.Map // mailbox id -> struct{}

	mu       sync.Mutex
	byID     map[recentID]*recentPost
	order    []recentID // oldest first, from head on
	head     int
	bytes    int
	maxBytes int // 0: defaultRecentBytes
	maxPosts int // 0: defaultRecentPosts, negative: keep none
}

// Bounds of the recent posts kept: two answers' worth of 4 MB batches.
const (
	defaultRecentBytes = 8 << 20
	defaultRecentPosts = 4096
)

type recentID struct {
	mbox uint64
	id   ChangeID
}

type recentPost struct {
	change Change // without Body
	uid    uint32
	body   []byte
}

func (r *recentPosts) limits() (bytes, posts int) {
	bytes, posts = r.maxBytes, r.maxPosts
	if bytes <= 0 {
		bytes = defaultRecentBytes
	}
	if posts == 0 {
		posts = defaultRecentPosts
	}
	return bytes, posts
}

// serving notes that a replica pulls posts of mailbox mbox: from now on
// its new posts are kept.
func (r *recentPosts) serving(mbox uint64) {
	if _, ok := r.served.Load(mbox); !ok {
		r.served.Store(mbox, struct{}{})
	}
}

// put keeps the add change c of post uid in mailbox mbox, with a copy of
// its whole body, if a replica pulls that mailbox; a body above a quarter
// of the byte bound is not kept.
func (r *recentPosts) put(mbox uint64, c Change, uid uint32, body []byte) {
	maxBytes, maxPosts := r.limits()
	if maxPosts < 0 || len(body) > maxBytes/4 {
		return
	}
	if _, ok := r.served.Load(mbox); !ok {
		return
	}
	c.Body = nil
	p := &recentPost{change: c, uid: uid, body: append([]byte(nil), body...)}
	k := recentID{mbox, c.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[recentID]*recentPost{}
	}
	if old, ok := r.byID[k]; ok {
		r.bytes -= len(old.body)
	} else {
		r.order = append(r.order, k)
	}
	r.byID[k] = p
	r.bytes += len(p.body)
	for r.bytes > maxBytes || len(r.order)-r.head > maxPosts {
		old := r.order[r.head]
		r.order[r.head] = recentID{}
		r.head++
		if e, ok := r.byID[old]; ok {
			r.bytes -= len(e.body)
			delete(r.byID, old)
		}
	}
	if r.head > 0 && r.head >= len(r.order)/2 { // amortized: each key moves at most once per eviction
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}

// get returns the post kept for change id of mailbox mbox.
func (r *recentPosts) get(mbox uint64, id ChangeID) (*recentPost, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byID[recentID{mbox, id}]
	return p, ok
}

// size reports the entries and body bytes kept (tests).
func (r *recentPosts) size() (posts, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID), r.bytes
}

package qmgr

import (
	"container/heap"
	"time"

	"pfrouter/directory"
	"pfrouter/envelope"
)

// The scheduler is Postfix qmgr's active queue: which message is attempted
// next, without looking at the others. Its state is guarded by Manager.mu
// and it does no I/O; the Manager loads and saves envelopes around it.
//
//   - fresh: messages not attempted yet (just accepted, an NDR, or found
//     unattempted at start-up), first in first out. They go before
//     retries, so a new message never waits behind a backlog; one retry
//     in freshBurst+1 still goes first when both are due, so a burst of
//     new mail cannot starve the backlog.
//   - retry: every other message, in a heap by due time. Only the top is
//     looked at.
//   - active: messages whose envelope is in memory. At most maxActive;
//     the rest wait on disk as a stub (id, due time, destinations) of
//     about 200 bytes, and their envelope is read back when they are
//     attempted.
//   - byDest: the messages with a pending recipient routed toward each
//     server (or waiting for a routing decision, routeKey), so a
//     link-state change wakes only the messages whose path changed.
type sched struct {
	maxActive int
	active    int
	fresh     []*entry
	retry     dueHeap
	byDest    map[string]map[*entry]struct{}
	streak    int // fresh entries dispatched in a row while a retry was due
}

// freshBurst: fresh messages dispatched in a row while a retry is due.
const freshBurst = 4

// outboundKey prefixes the key of an outbound connector: its recipients
// are routed again when it goes down (outboundDown), wherever they are.
const outboundKey = "\x00outbound:"

// routeKey indexes the messages with a recipient that needs a routing
// decision here: any change can alter it, so every change wakes them.
const routeKey = "\x00route"

func newSched(maxActive int) *sched {
	return &sched{maxActive: maxActive, byDest: map[string]map[*entry]struct{}{}}
}

// addFresh queues a message for its first attempt. An entry with its
// envelope counts as active; past maxActive the caller must not give one
// (see holdable).
func (s *sched) addFresh(e *entry) {
	e.hidx = -1
	if e.env != nil && !e.loaded {
		e.loaded = true
		s.active++
	}
	s.fresh = append(s.fresh, e)
}

// holdable reports whether one more envelope may stay in memory.
func (s *sched) holdable() bool { return s.active < s.maxActive }

// schedule puts a message that is not running into the retry heap at due.
func (s *sched) schedule(e *entry, due time.Time) {
	e.due = due
	if e.hidx >= 0 {
		heap.Fix(&s.retry, e.hidx)
		return
	}
	heap.Push(&s.retry, e)
}

// next takes the entry to attempt now, or nil. The entry is marked running
// and counted active; the caller reads its envelope if it has none.
func (s *sched) next(now time.Time) *entry {
	for len(s.fresh) > 0 && s.fresh[0].deleted {
		s.popFresh()
	}
	canLoad := s.active < s.maxActive
	var f, r *entry
	if len(s.fresh) > 0 && (s.fresh[0].loaded || canLoad) {
		f = s.fresh[0]
	}
	if len(s.retry) > 0 && !s.retry[0].due.After(now) && (s.retry[0].loaded || canLoad) {
		r = s.retry[0]
	}
	var e *entry
	switch {
	case f != nil && (r == nil || s.streak < freshBurst):
		e = s.popFresh()
		if r != nil {
			s.streak++
		}
	case r != nil:
		e = heap.Pop(&s.retry).(*entry)
		s.streak = 0
	default:
		return nil
	}
	if !e.loaded {
		e.loaded = true
		s.active++
	}
	e.running = true
	return e
}

func (s *sched) popFresh() *entry {
	e := s.fresh[0]
	s.fresh[0] = nil
	s.fresh = s.fresh[1:]
	if len(s.fresh) == 0 {
		s.fresh = nil // let the backing array go
	}
	return e
}

// nextDue is when the earliest retry is due (zero: none).
func (s *sched) nextDue() time.Time {
	if len(s.retry) == 0 {
		return time.Time{}
	}
	return s.retry[0].due
}

// ready reports whether next would return an entry now.
func (s *sched) ready(now time.Time) bool {
	canLoad := s.active < s.maxActive
	for _, e := range s.fresh {
		if !e.deleted {
			return e.loaded || canLoad
		}
	}
	return len(s.retry) > 0 && !s.retry[0].due.After(now) && (s.retry[0].loaded || canLoad)
}

// release drops an entry's envelope from memory (it is on disk as read or
// last written).
func (s *sched) release(e *entry) {
	if e.loaded {
		e.loaded = false
		s.active--
	}
	e.env, e.raw = nil, nil
}

// remove forgets a message that left the queue.
func (s *sched) remove(e *entry) {
	e.deleted = true
	if e.hidx >= 0 {
		heap.Remove(&s.retry, e.hidx)
	}
	s.setDests(e, nil)
	s.release(e)
}

// setDests replaces the destinations a message is indexed under.
func (s *sched) setDests(e *entry, dests []string) {
	for _, d := range e.dests {
		if set := s.byDest[d]; set != nil {
			delete(set, e)
			if len(set) == 0 {
				delete(s.byDest, d)
			}
		}
	}
	e.dests = dests
	for _, d := range dests {
		set := s.byDest[d]
		if set == nil {
			set = map[*entry]struct{}{}
			s.byDest[d] = set
		}
		set[e] = struct{}{}
	}
}

// wake makes the messages routed toward dest due now; their recipients
// toward it are attempted even before their next retry. A running one is
// attempted again when its attempt ends. It returns how many it woke.
func (s *sched) wake(dest string, now time.Time) int {
	n := 0
	for e := range s.byDest[dest] {
		n++
		if e.running {
			e.again = true
			e.wakeLater = appendOnce(e.wakeLater, dest)
			continue
		}
		e.wake = appendOnce(e.wake, dest)
		if e.hidx >= 0 && e.due.After(now) {
			s.schedule(e, now)
		}
	}
	return n
}

func appendOnce(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

// destsOf is what a message's pending recipients wait on: the server each
// is routed toward (not this one), or routeKey for those that need a
// routing decision here. Recipients for this server's own stores or
// outbound connectors depend on no path.
func destsOf(self string, env *envelope.Envelope) []string {
	var out []string
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if r.State != envelope.Pending {
			continue
		}
		if d := destOf(self, r); d != "" {
			out = appendOnce(out, d)
		}
		if r.Stage == envelope.StageTarget && r.Outbound != "" {
			out = appendOnce(out, outboundKey+r.Outbound)
		}
		if r.Stage == envelope.StageNew && r.Waiting {
			for _, b := range r.Blockers {
				out = appendOnce(out, b)
			}
		}
	}
	return out
}

// maxBlockers: a recipient that more servers could unblock waits under
// routeKey instead (woken by any change), so a stub stays small.
const maxBlockers = 16

// blockers are the servers other than self whose reachability decides a
// recipient that routing queued for lack of a reachable store: the servers
// of the folder's replicas (R10) and, unless step 1 already found a
// hierarchy store, of the hierarchy's stores (R6b); or a user's mailbox
// server. Nil (routeKey: woken by any change) when the address does not
// resolve or too many servers count.
func blockers(snap *directory.Snapshot, self, addr string, step1Done bool) []string {
	ent, err := snap.Resolve(addr)
	if err != nil {
		return nil
	}
	var out []string
	add := func(server string) {
		if server != "" && server != self {
			out = appendOnce(out, server)
		}
	}
	switch {
	case ent.User != nil:
		add(ent.User.Server)
	case ent.Folder != nil:
		for _, rep := range snap.Replicas(ent.Folder.Key) {
			if st := snap.Store(rep.Store); st != nil {
				add(st.Server)
			}
		}
		if !step1Done {
			if h := snap.Hierarchy(ent.Folder.Hierarchy); h != nil {
				for _, st := range h.Stores {
					add(st.Server)
				}
			}
		}
	}
	if len(out) == 0 || len(out) > maxBlockers {
		return nil
	}
	return out
}

func destOf(self string, r *envelope.Recipient) string {
	switch {
	case r.Stage == envelope.StageNew && r.Waiting && len(r.Blockers) > 0:
		return ""
	case r.Stage == envelope.StageTarget && r.Server != self:
		return r.Server
	case r.Stage == envelope.StageTarget:
		return ""
	case r.Stage == envelope.StageHierarchy && r.HierarchyServer != self:
		return r.HierarchyServer
	}
	return routeKey
}

// dueOf is when a message loaded from the queue is next attempted: now for
// a recipient never attempted, else its next retry.
func dueOf(env *envelope.Envelope, now time.Time) time.Time {
	var due time.Time
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if r.State != envelope.Pending {
			continue
		}
		t := r.NextAttempt
		if t.IsZero() || t.Before(now) {
			t = now
		}
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	if due.IsZero() {
		due = now // nothing pending: finish it (a removal a crash lost)
	}
	return due
}

// dueHeap orders entries by due time, then id.
type dueHeap []*entry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].id < h[j].id
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}

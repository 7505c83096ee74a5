package store

// Per-mailbox group commit for add (Deliver, Append): UIDs of a mailbox
// must be allocated one commit at a time (the mailbox lock), and with one
// fsync'd commit per message a busy folder took one disk sync per
// delivery. Instead each add queues its message on the mailbox and takes
// the mailbox lock; whoever gets the lock first writes every message
// waiting at that moment in ONE transaction with consecutive UIDs, then
// answers them all. The others find their message already written when
// they get the lock. Every caller still returns only after its message is
// fsync'd, the mailbox record (UIDNEXT) is updated in the same
// transaction, and the dedup record of each Delivery.ID is read and
// written inside it, so two concurrent deliveries with the same ID store
// one copy whether they share a batch or not.

import (
	"errors"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	// groupBytes bounds the body bytes of one group commit (the last
	// chunks of its messages); chunkSize already leaves room for records.
	groupBytes = chunkSize
	// groupMax bounds the messages of one group commit.
	groupMax = 256
	// groupConflictRetries: a commit can conflict with a mailbox rename
	// or delete (they change the records add reads without the mailbox
	// lock); it is rebuilt and tried again.
	groupConflictRetries = 3
)

// addReq is one message waiting to be added to a mailbox.
type addReq struct {
	ref    MailboxRef
	mbox   uint64 // the mailbox id the request was queued under
	msg    messageRecord
	last   []byte // the last (often only) body chunk, written with the records
	flags  []string
	viewer string
	remote *Change // set when the message is a post replicated from another store
	// claim, on the last post of a replicated batch of posts only (Apply),
	// is the batch's claim: the group commit that stores this post adds it
	// to the folder's CNSet if every post of batch is stored, so the batch
	// takes no commit (and no sync) of its own for the claim.
	claim CNSet
	batch []*addReq

	// Set by the committing goroutine before it releases the mailbox lock.
	done    bool
	claimed bool // claim was committed with the post
	uid     uint32
	dup     bool
	err     error
}

func (r *addReq) cost() int { return len(r.last) + 1024 }

// pendingKey keys a mailbox's addQueue in Store.locks, next to the
// mailbox's lock (keyed by the bare id), so the queue needs no new field.
type pendingKey uint64

// addQueue holds the requests waiting for a mailbox's next group commit.
type addQueue struct {
	mu   sync.Mutex
	reqs []*addReq
}

func (s *Store) addQueue(id uint64) *addQueue {
	q, _ := s.locks.LoadOrStore(pendingKey(id), &addQueue{})
	return q.(*addQueue)
}

// commitAdd queues r on its mailbox and returns when r is committed (or
// failed): by this goroutine, with every other request waiting, or by
// another that got the mailbox lock first.
func (s *Store) commitAdd(r *addReq) { s.commitAddAll(r.mbox, []*addReq{r}) }

// commitAddAll queues rs on their mailbox (rec) in order and returns when
// all are committed: they take consecutive UIDs in that order, in as few
// group commits as the limits allow. A request that must be retried on a
// new mailbox (errRetry) is left to the caller.
func (s *Store) commitAddAll(mbox uint64, rs []*addReq) {
	if len(rs) == 0 {
		return
	}
	q := s.addQueue(mbox)
	q.mu.Lock()
	for _, r := range rs {
		r.mbox, r.done = mbox, false
		q.reqs = append(q.reqs, r)
	}
	q.mu.Unlock()
	mu := s.lock(mbox)
	mu.Lock()
	defer mu.Unlock()
	for _, r := range rs {
		for !r.done {
			q.mu.Lock()
			n, size := 0, 0
			for n < len(q.reqs) && n < groupMax && (n == 0 || size+q.reqs[n].cost() <= groupBytes) {
				size += q.reqs[n].cost()
				n++
			}
			group := q.reqs[:n:n]
			q.reqs = append([]*addReq(nil), q.reqs[n:]...)
			q.mu.Unlock()
			s.commitGroup(group)
		}
	}
}

// commitGroup writes group in one transaction (split in halves if badger
// finds it too big), answers each request and publishes the new messages.
func (s *Store) commitGroup(group []*addReq) {
	var err error
	for attempt := 0; ; attempt++ {
		err = s.writeGroup(group)
		if errors.Is(err, badger.ErrConflict) && attempt < groupConflictRetries {
			continue
		}
		break
	}
	if errors.Is(err, badger.ErrTxnTooBig) && len(group) > 1 {
		s.commitGroup(group[:len(group)/2])
		s.commitGroup(group[len(group)/2:])
		return
	}
	for _, r := range group {
		if err != nil {
			r.uid, r.dup, r.err = 0, false, err
		}
		r.done = true
		if r.err == nil && !r.dup {
			s.notify.publish(r.mbox, Event{Kind: EventExists, UID: r.uid})
		}
	}
	if err == nil && len(group) > 0 && group[0].ref.Public() {
		s.changed(group[0].ref)
	}
}

// writeGroup applies each request in order inside one transaction, as
// consecutive single commits would: a transaction reads its own writes,
// so each request sees the UIDNEXT and dedup records of those before it.
// A request's own failure (mailbox gone or replaced) is kept in its err
// and writes nothing; an error returned fails the whole group.
func (s *Store) writeGroup(group []*addReq) error {
	fv := &flagView{db: s.db.DB}
	defer fv.close()
	return s.db.Update(func(txn *badger.Txn) error {
		var kn CNSet // the public folder's CNSet, loaded at its first change (changes.go)
		var knBox uint64
		ms := modSeqAlloc{s: s}
		stamp := time.Now()
		// The mailbox record is read once per group and written once at
		// the end with the UIDNEXT of every message of the group.
		boxes := map[MailboxRef]*mailboxRecord{}
		written := map[*mailboxRecord]bool{}
		for _, r := range group {
			r.uid, r.dup, r.err, r.claimed = 0, false, nil, false
			cur := boxes[r.ref]
			if cur == nil {
				var err error
				if cur, err = lookup(txn, r.ref); err != nil {
					r.err = err
					continue
				}
				boxes[r.ref] = cur
			}
			if cur.ID != r.mbox {
				r.err = errRetry // deleted and recreated meanwhile: queue on the new one
				continue
			}
			if r.ref.Public() && kn == nil {
				var err error
				if kn, err = loadCNSet(txn, cur.ID); err != nil {
					return err
				}
				knBox = cur.ID
			}
			if r.remote != nil {
				ok, err := checkRemoteAdd(txn, r.remote, cur.ID, kn)
				if err != nil {
					return err
				}
				if !ok {
					r.dup = true
					continue
				}
				r.msg.Item = r.remote.Item.String()
			} else if r.msg.ID != "" {
				if item, err := txn.Get(dedupKey(cur.ID, r.msg.ID)); err == nil {
					r.dup = true
					if err := item.Value(func(b []byte) error {
						r.uid, _ = parseDedup(b)
						return nil
					}); err != nil {
						return err
					}
					continue
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
			}
			r.uid = cur.UIDNext
			cur.UIDNext++
			written[cur] = true
			var err error
			if r.msg.ModSeq, err = ms.next(txn, cur.ID, ""); err != nil {
				return err
			}
			if r.ref.Public() {
				if r.remote == nil {
					if err := s.trackLocalAdd(txn, r, cur.ID, kn); err != nil {
						return err
					}
				} else if err := linkRemoteAdd(txn, fv, cur.ID, r.remote.Item, r.uid, r.msg.ModSeq); err != nil {
					return err
				}
			}
			if err := txn.Set(bodyKey(r.msg.Body, r.msg.Chunks-1), r.last); err != nil {
				return err
			}
			if err := setJSON(txn, msgKey(cur.ID, r.uid), r.msg); err != nil {
				return err
			}
			if r.msg.ID != "" {
				if err := txn.Set(dedupKey(cur.ID, r.msg.ID), dedupValue(r.uid, stamp)); err != nil {
					return err
				}
			}
			if r.ref.Public() && r.viewer != "" && len(r.flags) > 0 {
				if err := setJSON(txn, privFlagsKey(cur.ID, r.viewer, r.uid), privFlags{Flags: r.flags, ModSeq: r.msg.ModSeq}); err != nil {
					return err
				}
			}
		}
		for _, r := range group {
			if r.claim != nil && kn != nil && r.mbox == knBox && batchStored(r.batch) {
				kn.Union(r.claim)
				r.claimed = true
			}
		}
		for cur := range written {
			if err := setJSON(txn, boxKey(cur.ID), cur); err != nil {
				return err
			}
		}
		if kn != nil {
			return setJSON(txn, knowKey(knBox), kn)
		}
		return nil
	})
}

// batchStored reports whether every post of a replicated batch is stored
// or known (a duplicate): those in earlier group commits are committed,
// those in this one are written in its transaction.
func batchStored(batch []*addReq) bool {
	for _, r := range batch {
		if r.err != nil {
			return false
		}
	}
	return true
}

package queue

// The committer is the queue's group commit (SPEC S2 at speed). badger v4
// shares the value-log fsync between concurrent transactions but syncs its
// write-ahead log once per transaction, so one transaction per message
// costs at least one disk sync per message however many sessions wait.
// Instead every small write (Put of a one-chunk body, SetEnvelope, Delete)
// is handed to one goroutine, which takes everything waiting, applies it
// in ONE transaction committed with fsync, and only then answers each
// caller: a caller still returns only after its data is on disk, and a
// batch is all or nothing, so a crash never leaves half a message.
//
// Requests arriving while a batch is being synced form the next batch, so
// batches grow with load and one session pays no waiting at all.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"pfrouter/internal/kv"
)

// ErrClosed is returned for a write after Close.
var ErrClosed = errors.New("queue is closed")

const (
	// maxBatchBytes bounds the keys and values of one batch: kv.MaxBatch,
	// the size every pfrouter transaction stays under, minus slack for
	// keys and badger's per-entry overhead.
	maxBatchBytes = kv.MaxBatch - 64<<10
	// maxBatchOps bounds the requests of one batch, so a flood of tiny
	// requests cannot make one commit (and every caller in it) wait long.
	maxBatchOps = 512
	// conflictRetries: a batch that read a key (SetEnvelope, Delete) can
	// conflict with a write made outside the committer (chunked Put,
	// PutAndDelete); it is simply rebuilt and committed again.
	conflictRetries = 5
	// lazyDelay is how long a DeleteLater waits for a batch to ride on
	// before it is committed on its own (an idle queue).
	lazyDelay = 20 * time.Millisecond
	// lazyPerBatch bounds the lazy deletes added to one batch; lazyKick
	// is the backlog that commits them without waiting for lazyDelay.
	lazyPerBatch = 1024
	lazyKick     = 256
)

type opKind uint8

const (
	opPut opKind = iota
	opSetEnvelope
	opDelete
	opFlush // no write: makes the loop commit the lazy deletes waiting
)

// request is one write waiting for the committer.
type request struct {
	op        opKind
	id        string
	env, body []byte
	done      chan error // buffered: the committer never blocks on a caller that gave up
}

func (r *request) size() int { return len(r.id)*2 + len(r.env) + len(r.body) + 32 }

// committer owns the goroutine that writes batches.
type committer struct {
	db  *badger.DB
	in  chan *request
	mu  sync.RWMutex // closed and sends on in
	end chan struct{}
	// closed is set under mu's write lock; senders check it under the read lock.
	closed bool
	// beforeCommit, when set (tests), runs inside each batch transaction
	// before commit; an error fails the whole batch.
	beforeCommit func() error

	// Lazy deletes (DeleteLater): nobody waits for them, so they join the
	// next batch instead of paying a commit of their own; a timer
	// commits them when no batch comes. lazyIDs hides their messages
	// from readers meanwhile.
	lmu     sync.Mutex
	lazy    []*request
	lazyIDs map[string]int
	armed   bool // a lazyDelay timer is pending
	log     *slog.Logger
}

func newCommitter(db *badger.DB, log *slog.Logger) *committer {
	c := &committer{db: db, in: make(chan *request, 1024), end: make(chan struct{}), lazyIDs: map[string]int{}, log: log}
	go c.loop()
	return c
}

// later queues a delete nobody waits for. It is committed with the next
// batch, or after lazyDelay; until then deleting(id) is true. A crash
// before that commit leaves the message queued: it is delivered again,
// which the store's deduplication absorbs.
func (c *committer) later(id string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return
	}
	c.lmu.Lock()
	c.lazy = append(c.lazy, &request{op: opDelete, id: id, done: make(chan error, 1)})
	c.lazyIDs[id]++
	arm := !c.armed
	c.armed = true
	kick := len(c.lazy) >= lazyKick
	c.lmu.Unlock()
	if arm {
		time.AfterFunc(lazyDelay, c.kick)
	}
	if kick {
		c.kickLocked()
	}
}

// kick asks the loop to commit the lazy deletes now.
func (c *committer) kick() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.closed {
		c.kickLocked()
	}
}

// kickLocked sends a flush without blocking (c.mu read-locked, not
// closed): if the channel is full, a batch is coming anyway.
func (c *committer) kickLocked() {
	select {
	case c.in <- &request{op: opFlush, done: make(chan error, 1)}:
	default:
	}
}

// takeLazy removes up to lazyPerBatch lazy deletes for a batch and says
// whether more remain.
func (c *committer) takeLazy() (taken []*request, more bool) {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	n := min(len(c.lazy), lazyPerBatch)
	taken = c.lazy[:n:n]
	c.lazy = c.lazy[n:]
	if len(c.lazy) == 0 {
		c.lazy = nil
		c.armed = false
	}
	return taken, len(c.lazy) > 0
}

// deleting reports whether id has a lazy delete not yet committed.
func (c *committer) deleting(id string) bool {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	return c.lazyIDs[id] > 0
}

// do hands r to the committer and waits for its commit. ctx bounds only
// the hand-over: once the committer holds the request it may commit it at
// any moment, so do waits for the outcome whatever ctx says. Otherwise a
// caller whose context ended would report a failure for a message that is
// on disk (issue 10 item 4: the queue manager then never scheduled it, and
// the client's retry made a duplicate). The wait is one batch commit.
func (c *committer) do(ctx context.Context, r *request) error {
	r.done = make(chan error, 1)
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	select {
	case c.in <- r:
	case <-ctx.Done():
		c.mu.RUnlock()
		return ctx.Err()
	}
	c.mu.RUnlock()
	return <-r.done
}

// close stops taking requests, commits those already handed over, and
// waits for the goroutine to end.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	<-c.end
}

func (c *committer) loop() {
	defer close(c.end)
	var carry *request // the request that did not fit the previous batch
	more := false      // lazy deletes are left over from the last batch
	for {
		first := carry
		carry = nil
		if first == nil && more {
			first = &request{op: opFlush, done: make(chan error, 1)}
		}
		if first == nil {
			r, ok := <-c.in
			if !ok {
				// Closing: commit the lazy deletes still waiting.
				for {
					lazy, left := c.takeLazy()
					if len(lazy) > 0 {
						c.commit(lazy)
						c.lazyDone(lazy)
					}
					if !left {
						return
					}
				}
			}
			first = r
		}
		batch, size := []*request{first}, first.size()
	fill:
		for len(batch) < maxBatchOps {
			select {
			case r, ok := <-c.in:
				if !ok {
					break fill
				}
				if size+r.size() > maxBatchBytes {
					carry = r
					break fill
				}
				batch, size = append(batch, r), size+r.size()
			default:
				break fill
			}
		}
		var lazy []*request
		lazy, more = c.takeLazy()
		if len(lazy) == 0 && onlyFlush(batch) {
			for _, r := range batch {
				r.done <- nil
			}
			continue
		}
		c.commit(append(batch, lazy...))
		c.lazyDone(lazy)
	}
}

// lazyDone forgets committed (or failed) lazy deletes; a failure is
// logged, as nobody waits for it (the message will be delivered again).
func (c *committer) lazyDone(rs []*request) {
	var failed error
	c.lmu.Lock()
	for _, r := range rs {
		if err := <-r.done; err != nil && failed == nil {
			failed = err
		}
		if c.lazyIDs[r.id]--; c.lazyIDs[r.id] <= 0 {
			delete(c.lazyIDs, r.id)
		}
	}
	c.lmu.Unlock()
	if failed != nil {
		c.log.Warn("queue: removing delivered messages failed; they will be delivered again (deduplicated)", "messages", len(rs), "err", failed)
	}
}

func onlyFlush(batch []*request) bool {
	for _, r := range batch {
		if r.op != opFlush {
			return false
		}
	}
	return true
}

// commit writes batch in one transaction and answers every request. A
// batch badger finds too big is split in halves.
func (c *committer) commit(batch []*request) {
	var results []error
	var err error
	for attempt := 0; ; attempt++ {
		results, err = c.write(batch)
		if errors.Is(err, badger.ErrConflict) && attempt < conflictRetries {
			continue
		}
		break
	}
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		c.commit(batch[:len(batch)/2])
		c.commit(batch[len(batch)/2:])
		return
	}
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- fmt.Errorf("queue %s: commit: %w", r.id, err)
		default:
			r.done <- results[i]
		}
	}
}

// write applies batch in one transaction. results holds each request's own
// outcome (ErrNotFound for a SetEnvelope of a message deleted meanwhile),
// err a failure of the whole transaction. Requests apply in order, and a
// transaction reads its own writes, so a SetEnvelope after a Delete of the
// same id in one batch sees it gone, as it would one commit later.
func (c *committer) write(batch []*request) (results []error, err error) {
	results = make([]error, len(batch))
	err = c.db.Update(func(txn *badger.Txn) error {
		for i, r := range batch {
			var err error
			switch r.op {
			case opPut:
				if err = txn.Set(chunkKey(r.id, 0), r.body); err == nil {
					err = txn.Set(envKey(r.id), r.env)
				}
			case opSetEnvelope:
				_, err = txn.Get(envKey(r.id))
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
					results[i], err = ErrNotFound, nil
				case err == nil:
					err = txn.Set(envKey(r.id), r.env)
				}
			case opDelete:
				err = deleteInTxn(txn, r.id)
			}
			if err != nil {
				return err
			}
		}
		if c.beforeCommit != nil {
			return c.beforeCommit()
		}
		return nil
	})
	return results, err
}

// deleteInTxn deletes a message's envelope and every body chunk in txn.
// Most bodies are one chunk: a point lookup of chunk 1 settles that
// without an iterator (badger builds one over every table).
func deleteInTxn(txn *badger.Txn, id string) error {
	if err := txn.Delete(envKey(id)); err != nil {
		return err
	}
	if err := txn.Delete(chunkKey(id, 0)); err != nil {
		return err
	}
	switch _, err := txn.Get(chunkKey(id, 1)); {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	case err != nil:
		return err
	}
	var keys [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(bodyPrefix + id + "/")})
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

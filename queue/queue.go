// Package queue is a server's durable mail queue: each message is an opaque
// envelope record (owned by the queue manager, package qmgr) and a body,
// written with fsync before Put returns (SPEC S2). Concurrent Puts,
// SetEnvelopes and Deletes share one transaction and one fsync per batch
// (group commit, commit.go), so throughput grows with concurrency.
//
// A body larger than one transaction is written in chunks first and the
// envelope last; a crash in between leaves chunks without an envelope, which
// Open deletes, so no half message is ever visible.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"pfrouter/internal/kv"
)

// ErrNotFound is returned for an unknown queue id.
var ErrNotFound = errors.New("no such queued message")

// Key layout:
//
//	e/<id>          envelope (opaque bytes)
//	b/<id>/<n:4>    body chunk n (big-endian), one chunk for most messages
const (
	envPrefix  = "e/"
	bodyPrefix = "b/"
)

// inlineValues keeps bodies up to this size in badger's LSM tree and its
// write-ahead log rather than the value log. Queued messages live for
// seconds: inline, a commit writes one log instead of two, and a dequeued
// body is dropped by compaction instead of staying in a value-log file
// nothing garbage-collects. Larger bodies (rare) still go to the value log.
const inlineValues = 256 << 10

// Queue is a durable queue in one badger database.
type Queue struct {
	db  *badger.DB
	log *slog.Logger
	seq atomic.Uint64
	c   *committer
}

// Open opens the queue in dir and removes chunks left by a crash.
func Open(dir string, logger *slog.Logger) (*Queue, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := kv.OpenWith(dir, logger, kv.Options{ValueThreshold: inlineValues})
	if err != nil {
		return nil, err
	}
	q := &Queue{db: db, log: logger}
	if err := q.sweepOrphans(); err != nil {
		db.Close()
		return nil, err
	}
	q.c = newCommitter(db, logger)
	return q, nil
}

// Close commits the writes already handed to the committer, stops it, and
// closes the database. Writes after Close fail with ErrClosed.
func (q *Queue) Close() error {
	q.c.close()
	return q.db.Close()
}

// NewID returns a queue id: time-ordered (so a scan is oldest first), unique
// across restarts and servers.
func (q *Queue) NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint32(b[8:12], uint32(q.seq.Add(1)))
	rand.Read(b[12:])
	return hex.EncodeToString(b[:])
}

func envKey(id string) []byte { return []byte(envPrefix + id) }

func chunkKey(id string, n int) []byte {
	k := make([]byte, 0, len(bodyPrefix)+len(id)+5)
	k = append(k, bodyPrefix...)
	k = append(k, id...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint32(k, uint32(n))
}

// Put stores a new message durably: when it returns nil, the envelope and
// body survive a crash. A body of one chunk goes through the group commit;
// if ctx ends while it waits, Put returns ctx's error and the message may
// or may not be queued (see committer.do).
func (q *Queue) Put(ctx context.Context, id string, envelope, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	chunks := (len(body) + kv.MaxBatch - 1) / kv.MaxBatch
	if chunks == 0 {
		chunks = 1
	}
	// Small message: one batch, one shared fsync.
	if chunks == 1 {
		return q.c.do(ctx, &request{op: opPut, id: id, env: envelope, body: body})
	}
	for n := 0; n < chunks; n++ {
		end := min((n+1)*kv.MaxBatch, len(body))
		part := body[n*kv.MaxBatch : end]
		if err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(id, n), part) }); err != nil {
			q.deleteBody(id)
			return fmt.Errorf("queue %s: body chunk %d: %w", id, n, err)
		}
	}
	if err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(envKey(id), envelope) }); err != nil {
		q.deleteBody(id)
		return fmt.Errorf("queue %s: %w", id, err)
	}
	return nil
}

// PutAndDelete stores a new message and removes another in one commit: a
// non-delivery report replaces the message it reports on, so a crash leaves
// either both or the original (which is then reported again), never neither.
func (q *Queue) PutAndDelete(ctx context.Context, id string, envelope, body []byte, deleteID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	chunks := max((len(body)+kv.MaxBatch-1)/kv.MaxBatch, 1)
	for n := 1; n < chunks; n++ {
		part := body[n*kv.MaxBatch : min((n+1)*kv.MaxBatch, len(body))]
		if err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(id, n), part) }); err != nil {
			q.deleteBody(id)
			return fmt.Errorf("queue %s: body chunk %d: %w", id, n, err)
		}
	}
	err := q.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(chunkKey(id, 0), body[:min(kv.MaxBatch, len(body))]); err != nil {
			return err
		}
		if err := txn.Set(envKey(id), envelope); err != nil {
			return err
		}
		return txn.Delete(envKey(deleteID))
	})
	if err != nil {
		q.deleteBody(id)
		return fmt.Errorf("queue %s replacing %s: %w", id, deleteID, err)
	}
	// The old body without its envelope is an orphan the next Open would
	// sweep anyway; remove it now.
	return q.c.do(context.Background(), &request{op: opDelete, id: deleteID})
}

// SetEnvelope replaces a message's envelope (delivery state, next attempt).
// It returns ErrNotFound for a message no longer queued.
func (q *Queue) SetEnvelope(id string, envelope []byte) error {
	return q.c.do(context.Background(), &request{op: opSetEnvelope, id: id, env: envelope})
}

// Envelope returns a message's envelope.
func (q *Queue) Envelope(id string) ([]byte, error) {
	if q.c.deleting(id) {
		return nil, ErrNotFound
	}
	var out []byte
	err := q.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(envKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	})
	return out, err
}

// Body returns a message's body.
func (q *Queue) Body(id string) ([]byte, error) {
	if q.c.deleting(id) {
		return nil, ErrNotFound
	}
	var out []byte
	err := q.db.View(func(txn *badger.Txn) error {
		prefix := []byte(bodyPrefix + id + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		found := false
		for it.Rewind(); it.Valid(); it.Next() {
			found = true
			if err := it.Item().Value(func(v []byte) error { out = append(out, v...); return nil }); err != nil {
				return err
			}
		}
		if !found {
			return ErrNotFound
		}
		return nil
	})
	return out, err
}

// Delete removes a message (delivered, bounced or deleted by an operator):
// envelope and body in one transaction, durable when Delete returns.
// Deleting an unknown id is not an error.
func (q *Queue) Delete(id string) error {
	if err := q.c.do(context.Background(), &request{op: opDelete, id: id}); err != nil {
		return fmt.Errorf("dequeue %s: %w", id, err)
	}
	return nil
}

// DeleteLater removes a delivered message without waiting for the disk:
// the removal rides on the next commit (or one lazyDelay later), so
// finishing a message costs no sync of its own. From now on the message is
// invisible to Scan, Envelope and Body. A crash before that commit leaves
// it queued, to be delivered again: only for messages whose redelivery is
// harmless (the store deduplicates by origin id), never for an operator's
// delete.
func (q *Queue) DeleteLater(id string) { q.c.later(id) }

func (q *Queue) deleteBody(id string) error {
	wb := q.db.NewWriteBatch()
	defer wb.Cancel()
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(bodyPrefix + id + "/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}

// Scan calls fn for each queued message, oldest first.
func (q *Queue) Scan(fn func(id string, envelope []byte) error) error {
	return q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(envPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(envPrefix):])
			if q.c.deleting(id) {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(id, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// sweepOrphans deletes body chunks whose envelope was never written.
func (q *Queue) sweepOrphans() error {
	var orphans []string
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(bodyPrefix)})
		defer it.Close()
		last := ""
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			id := string(k[len(bodyPrefix) : len(k)-5])
			if id == last {
				continue
			}
			last = id
			if _, err := txn.Get(envKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
				orphans = append(orphans, id)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue recovery: %w", err)
	}
	for _, id := range orphans {
		q.log.Warn("removing partial message left by a crash", "queue_id", id)
		if err := q.deleteBody(id); err != nil {
			return err
		}
	}
	return nil
}

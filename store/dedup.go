package store

// Delivery dedup records (d/<mailbox id><delivery id> -> uid, time): a
// Delivery.ID delivered to a mailbox twice is stored once. They make a
// delivery idempotent across the retries that can repeat it: the queue
// delivering again after a crash between the store's commit and the
// queue's, a peer relaying again after a lost 250, two routing attempts
// putting one post in two replicas (the replicated copy is recognised by
// its delivery id, checkRemoteAdd). Every one of those happens within the
// queue's message lifetime (routing.message_expiry): after it the message
// has been delivered or bounced and nobody sends it again. Kept forever
// they would grow with every message ever delivered, so ExpireDeliveries
// removes those older than a retention the caller keeps longer than that
// lifetime (replication.dedup_retention, docs/replication.md).

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// dedupValue is a dedup record: the uid the delivery was stored under and
// when (Unix seconds).
func dedupValue(uid uint32, at time.Time) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 12), uid)
	return binary.BigEndian.AppendUint64(b, uint64(at.Unix()))
}

// parseDedup reads a dedup record; a record written before records had a
// time (4 bytes) has the zero time.
func parseDedup(b []byte) (uid uint32, at time.Time) {
	if len(b) >= 4 {
		uid = binary.BigEndian.Uint32(b)
	}
	if len(b) >= 12 {
		at = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), 0)
	}
	return uid, at
}

// ExpireResult counts what ExpireDeliveries did.
type ExpireResult struct {
	Removed int // records older than the cut-off
	Stamped int // records without a time, given now (they expire one retention later)
}

// ExpireDeliveries removes the dedup records of every mailbox written
// before cutoff. A record without a time (written by an older version) is
// stamped with now instead: its age is unknown, so it is kept one whole
// retention from the first sweep that sees it.
func (s *Store) ExpireDeliveries(ctx context.Context, cutoff time.Time) (ExpireResult, error) {
	var res ExpireResult
	now := time.Now()
	type edit struct {
		key []byte
		val []byte // nil: delete
	}
	var edits []edit
	flush := func() error {
		if len(edits) == 0 {
			return nil
		}
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, e := range edits {
				if e.val == nil {
					if err := txn.Delete(e.key); err != nil {
						return err
					}
					continue
				}
				// Stamp only what is still the same record: a delivery
				// racing the sweep may have rewritten it.
				item, err := txn.Get(e.key)
				if err != nil {
					continue
				}
				var old uint32
				stale := false
				if err := item.Value(func(b []byte) error {
					old, _ = parseDedup(b)
					stale = len(b) < 12
					return nil
				}); err != nil {
					return err
				}
				if stale {
					if err := txn.Set(e.key, dedupValue(old, now)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		edits = edits[:0]
		return err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("d/"), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var at time.Time
			var size int
			if err := it.Item().Value(func(b []byte) error {
				_, at = parseDedup(b)
				size = len(b)
				return nil
			}); err != nil {
				return err
			}
			switch {
			case size < 12:
				edits = append(edits, edit{key: it.Item().KeyCopy(nil), val: []byte{}})
				res.Stamped++
			case at.Before(cutoff):
				edits = append(edits, edit{key: it.Item().KeyCopy(nil)})
				res.Removed++
			default:
				continue
			}
			if len(edits) >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	})
	if err != nil {
		return res, fmt.Errorf("expire delivery dedup records: %w", err)
	}
	return res, nil
}

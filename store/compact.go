package store

// Change-log compaction (docs/replication.md, "Compaction"). The log,
// tombstones and flag states of a public folder replica would grow with
// every change forever; once every replica of the folder holds a change
// (the intersection of their CN sets, the *acknowledged* set, computed by
// package replication from the CN sets the other replicas send with their
// pulls), what is only there to tell a lagging replica about it can go:
//
//   - a delete, with its tombstone, the deleted post's add and its flag
//     states, once the delete and the add are both acknowledged;
//   - a flag change that a later one of the same user on the same post
//     replaced, once acknowledged.
//
// The add of a post still held and the winning flag change of each user
// stay: a replica added later needs them. The acknowledged set is added to
// the folder's horizon (w/<id>), and a puller whose CN set does not cover
// the horizon (except for adds the log still serves) may lack a deletion
// nobody can send it any more: ChangesSince answers it with a resync
// instead of changes (Batch.Resync, in pages: resync.go), and ApplyResyncPage deletes what the
// source no longer holds.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

func horizonKey(mbox uint64) []byte { return idKey('w', mbox, 0) }

func loadHorizon(txn *badger.Txn, mbox uint64) (CNSet, error) {
	return loadSetAt(txn, horizonKey(mbox))
}

// CompactResult counts what Compact removed.
type CompactResult struct {
	Changes    int // log entries
	Tombstones int
}

// Compact removes from a public folder replica's change log what every
// replica has acknowledged (acked: the intersection of the other
// replicas' CN sets; this replica's own set is intersected in here) and
// no replica can need again, and widens the folder's horizon by it.
func (s *Store) Compact(ctx context.Context, ref MailboxRef, acked CNSet) (CompactResult, error) {
	var res CompactResult
	ref = ref.normalize()
	defer s.bumpVersion(ref)
	rec, err := s.view(ref)
	if err != nil {
		return res, err
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	var dead [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		own, err := loadCNSet(txn, rec.ID)
		if err != nil {
			return err
		}
		acked = acked.Intersect(own)
		prefix := idKey('g', rec.ID, 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			id, ok := parseLogKey(it.Item().Key())
			if !ok || !acked.Contains(id) {
				continue
			}
			var c Change
			if err := getJSON(txn, it.Item().Key(), &c); err != nil {
				return err
			}
			switch c.Kind {
			case ChangeDelete:
				if !acked.Contains(c.Item) {
					continue
				}
				dead = append(dead, it.Item().KeyCopy(nil), logKey(rec.ID, c.Item), itemKey('t', rec.ID, c.Item))
				res.Changes++
				res.Tombstones++
				fit := txn.NewIterator(badger.IteratorOptions{Prefix: flagStatePrefix(rec.ID, c.Item)})
				for fit.Rewind(); fit.Valid(); fit.Next() {
					dead = append(dead, fit.Item().KeyCopy(nil))
				}
				fit.Close()
			case ChangeFlags:
				var st flagState
				err := getJSON(txn, flagStateKey(rec.ID, c.Item, c.Viewer), &st)
				if errors.Is(err, badger.ErrKeyNotFound) || err == nil && st.Version != c.ID {
					dead = append(dead, it.Item().KeyCopy(nil))
					res.Changes++
				} else if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return CompactResult{}, fmt.Errorf("compact the change log of %s: %w", ref, err)
	}
	// The add entries of deleted posts were listed with their deletes; one
	// may have been listed twice or be gone already (harmless deletes).
	slices.SortFunc(dead, func(a, b []byte) int { return bytes.Compare(a, b) })
	dead = slices.CompactFunc(dead, func(a, b []byte) bool { return bytes.Compare(a, b) == 0 })
	for start := 0; start < len(dead) || start == 0; start += batch {
		part := dead[start:min(start+batch, len(dead))]
		last := start+batch >= len(dead)
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range part {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			if !last {
				return nil
			}
			h, err := loadHorizon(txn, rec.ID)
			if err != nil {
				return err
			}
			h.Union(acked)
			return setJSON(txn, horizonKey(rec.ID), h)
		})
		if err != nil {
			return res, fmt.Errorf("compact the change log of %s: %w", ref, err)
		}
		if last {
			break
		}
	}
	return res, nil
}

// Horizon returns what a replica's log was compacted up to (empty if never).
func (s *Store) Horizon(ctx context.Context, ref MailboxRef) (CNSet, error) {
	return s.setOf(ref, horizonKey)
}

// resyncGrant reports whether a replica holding have may lack a change
// compaction removed: a CN of the horizon missing from have that the log
// does not hold any more (a CN of the horizon that never was a change of
// this folder counts too: a replica whose set does not cover the horizon
// resyncs once, then covers it). grant is what the resync adds to its CN
// set: the horizon it lacks minus the changes the log still serves, which
// the pulls after the resync send.
func resyncGrant(txn *badger.Txn, mbox uint64, horizon, have CNSet) (resync bool, grant CNSet, err error) {
	grant = CNSet{}
	for origin, rs := range horizon.Minus(have) {
		for _, r := range rs {
			held, err := logIDsIn(txn, mbox, origin, r)
			if err != nil {
				return false, nil, err
			}
			if uint64(len(held)) <= r.Hi-r.Lo {
				resync = true
			}
			var served Ranges
			for _, n := range held {
				served = served.Add(n, n)
			}
			grant[origin] = grant[origin].Union(Ranges{r}.Minus(served))
		}
	}
	return resync, grant, nil
}

// logIDsIn lists the CNs of origin in r that the log holds.
func logIDsIn(txn *badger.Txn, mbox uint64, origin string, r Range) ([]uint64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: idKey('g', mbox, 0)})
	defer it.Close()
	var out []uint64
	for it.Seek(logKey(mbox, ChangeID{Origin: origin, N: r.Lo})); it.Valid(); it.Next() {
		id, ok := parseLogKey(it.Item().Key())
		if !ok || id.Origin != origin || id.N > r.Hi {
			break
		}
		out = append(out, id.N)
	}
	return out, nil
}

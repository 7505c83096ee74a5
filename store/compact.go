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
// instead of changes (Batch.Resync), and ApplyResync deletes what the
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

// liveItems lists the items of the posts a replica holds whose add is in
// set (a post held under two items, the same delivery stored by two
// replicas, lists both).
func liveItems(txn *badger.Txn, mbox uint64, set CNSet) ([]ChangeID, error) {
	var out []ChangeID
	prefix := idKey('m', mbox, 0)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item, err := ParseChangeID(string(it.Item().Key()[len(prefix):]))
		if err != nil || !set.Contains(item) {
			continue
		}
		uid, held, err := getUID(txn, it.Item().Key())
		if err != nil {
			return nil, err
		}
		if !held {
			continue
		}
		if ok, err := exists(txn, msgKey(mbox, uid)); err != nil || !ok {
			continue
		}
		out = append(out, item)
	}
	return out, nil
}

// ApplyResync brings a replica that lacks part of a source's compacted
// horizon in line: every post it holds whose add is in the horizon and
// that the source no longer holds (live) was deleted where the deletion
// can no longer be sent, and is deleted here; then grant (the horizon it
// lacked minus what the source's log still serves, see resyncGrant)
// joins its CN set, and the next pulls send the rest.
func (s *Store) ApplyResync(ctx context.Context, ref MailboxRef, horizon, grant CNSet, live []ChangeID) (deleted int, err error) {
	ref = ref.normalize()
	rec, err := s.ensure(ref, "")
	if err != nil {
		return 0, fmt.Errorf("resync %s: %w", ref, err)
	}
	keep := make(map[ChangeID]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	var gone []uint32
	err = s.db.Update(func(txn *badger.Txn) error {
		gone = gone[:0]
		ms := modSeqAlloc{s: s} // sessions learn of the deletions (QRESYNC VANISHED) like any expunge
		kn, err := loadCNSet(txn, rec.ID)
		if err != nil {
			return err
		}
		prefix := idKey('m', rec.ID, 0)
		byUID := map[uint32][]ChangeID{}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.Valid(); it.Next() {
			item, err := ParseChangeID(string(it.Item().Key()[len(prefix):]))
			if err != nil {
				continue
			}
			uid, held, err := getUID(txn, it.Item().Key())
			if err != nil {
				it.Close()
				return err
			}
			if held {
				byUID[uid] = append(byUID[uid], item)
			}
		}
		it.Close()
		for uid, items := range byUID {
			dead := true
			for _, item := range items {
				if keep[item] || !horizon.Contains(item) {
					dead = false
				}
			}
			if !dead {
				continue
			}
			for _, item := range items {
				if err := txn.Delete(itemKey('m', rec.ID, item)); err != nil {
					return err
				}
				// No delete change to name: the tombstone says only
				// "deleted" (a late add of it is still refused).
				if err := setJSON(txn, itemKey('t', rec.ID, item), ChangeID{}); err != nil {
					return err
				}
			}
			if ok, err := removeMessage(txn, rec.ID, uid, &ms); err != nil {
				return err
			} else if ok {
				gone = append(gone, uid)
			}
		}
		kn.Union(grant)
		return setJSON(txn, knowKey(rec.ID), kn)
	})
	if err != nil {
		return 0, fmt.Errorf("resync %s: %w", ref, err)
	}
	if len(gone) > 0 {
		if err := s.dropPrivateFlags(rec.ID, gone); err != nil {
			s.log.Warn("drop private flags of posts deleted by a resync", "mailbox", ref.String(), "err", err)
		}
		for _, uid := range gone {
			s.notify.publish(rec.ID, Event{Kind: EventExpunge, UID: uid})
		}
	}
	return len(gone), nil
}

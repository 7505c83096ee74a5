package store

// Paged resync (docs/replication.md, "Compaction"). A replica whose CN set
// does not cover a source's compacted horizon is brought in line by a
// resync: it deletes every post it holds whose add is in the horizon and
// that the source no longer holds, and adds to its CN set what of the
// horizon it lacked, minus what the source's log still serves (the grant).
// For a large folder neither list fits one frame, so the resync goes in
// pages, in change id order (origin, then CN) over the source's change
// log: each page carries the posts the source holds among a stretch of
// its log, and the grant clipped to that stretch. The receiver applies a
// page to the posts of its own log in the same stretch and keeps, durably
// and per source, where the resync stands (y/<id><source>); the source
// goes on from there while the receiver holds a cursor under the same
// horizon, and starts again from the beginning if its horizon changed.
// The grant of a stretch is added only once the stretch was checked, so a
// receiver restarted mid-way resumes, and a deletion in a later stretch
// is never skipped.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// ResyncCursor is where a paged resync of a replica from one source
// stands: the source's horizon it runs under and the last change id of
// the stretches applied.
type ResyncCursor struct {
	Horizon CNSet    `json:"horizon"`
	After   ChangeID `json:"after"`
}

func resyncKey(mbox uint64, source string) []byte {
	return append(idKey('y', mbox, len(source)), source...)
}

// ResyncCursor reads where a paged resync of ref from source stands; nil
// when none is in progress.
func (s *Store) ResyncCursor(ctx context.Context, ref MailboxRef, source string) (*ResyncCursor, error) {
	ref = ref.normalize()
	var cur *ResyncCursor
	err := s.viewReplica(ref, func(txn *badger.Txn, rec *mailboxRecord) error {
		var c ResyncCursor
		err := getJSON(txn, resyncKey(rec.ID, source), &c)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err == nil {
			cur = &c
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read resync cursor of %s: %w", ref, err)
	}
	return cur, nil
}

// ResyncPage is one page of a resync (Batch.Resync): the stretch of the
// source's log after From up to To (to the end if Last), the items of the
// posts the source holds there whose add is in Horizon, and the grant
// clipped to the stretch.
type ResyncPage struct {
	Horizon CNSet
	From    ChangeID
	To      ChangeID
	Last    bool
	Grant   CNSet
	Live    []ChangeID
}

// idAfter reports whether id comes after a in change id order (origin,
// then CN); the zero id comes before every other.
func idAfter(id, a ChangeID) bool {
	if id.Origin != a.Origin {
		return id.Origin > a.Origin
	}
	return id.N > a.N
}

// clip keeps the part of set after from and up to to (no bound if last).
func clip(set CNSet, from, to ChangeID, last bool) CNSet {
	out := CNSet{}
	for origin, rs := range set {
		if origin < from.Origin || !last && origin > to.Origin {
			continue
		}
		lo, hi := uint64(0), ^uint64(0)
		if origin == from.Origin {
			if from.N == ^uint64(0) {
				continue
			}
			lo = from.N + 1
		}
		if !last && origin == to.Origin {
			hi = to.N
		}
		if lo > hi {
			continue
		}
		if in := rs.Intersect(Ranges{{Lo: lo, Hi: hi}}); len(in) > 0 {
			out[origin] = in
		}
	}
	return out
}

// resyncPage reads the page of a resync after from: at most page entries
// of the log (at least one).
func resyncPage(txn *badger.Txn, mbox uint64, horizon, have CNSet, from ChangeID, page int) (ResyncPage, error) {
	p := ResyncPage{Horizon: horizon, From: from}
	prefix := idKey('g', mbox, 0)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	served := CNSet{}
	n := 0
	p.Last = true
	for it.Seek(logKey(mbox, from)); it.Valid(); it.Next() {
		id, ok := parseLogKey(it.Item().Key())
		if !ok || !idAfter(id, from) {
			continue
		}
		if n >= max(page, 1) {
			p.Last = false
			break
		}
		n++
		p.To = id
		served.Add(id.Origin, id.N, id.N)
		if !horizon.Contains(id) {
			continue
		}
		var c Change
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
			return p, fmt.Errorf("decode change %s: %w", id, err)
		}
		if c.Kind != ChangeAdd {
			continue
		}
		if held, err := holds(txn, mbox, c.Item); err != nil {
			return p, err
		} else if held {
			p.Live = append(p.Live, c.Item)
		}
	}
	p.Grant = clip(horizon.Minus(have), from, p.To, p.Last).Minus(served)
	return p, nil
}

// holds reports whether the replica holds the post of item.
func holds(txn *badger.Txn, mbox uint64, item ChangeID) (bool, error) {
	uid, held, err := getUID(txn, itemKey('m', mbox, item))
	if err != nil || !held {
		return false, err
	}
	return exists(txn, msgKey(mbox, uid))
}

// ApplyResyncPage applies one page of a resync of ref from source: every
// post it holds whose add is in the page's stretch and in the horizon and
// that the source does not list as live is deleted (its item tombstoned;
// a post held under two items goes when neither is left), the page's
// grant joins the CN set, and the cursor moves on (or is dropped after
// the last page), all in one commit.
func (s *Store) ApplyResyncPage(ctx context.Context, ref MailboxRef, source string, p ResyncPage) (deleted int, err error) {
	ref = ref.normalize()
	defer s.bumpVersion(ref)
	rec, err := s.ensure(ref, "")
	if err != nil {
		return 0, fmt.Errorf("resync %s: %w", ref, err)
	}
	keep := make(map[ChangeID]bool, len(p.Live))
	for _, id := range p.Live {
		keep[id] = true
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	var gone []uint32
	err = s.db.Update(func(txn *badger.Txn) error {
		gone = gone[:0]
		ms := modSeqAlloc{s: s}
		kn, err := loadCNSet(txn, rec.ID)
		if err != nil {
			return err
		}
		// The posts of this replica's own log in the stretch.
		var dead []ChangeID
		touched := map[uint32]bool{}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: idKey('g', rec.ID, 0)})
		for it.Seek(logKey(rec.ID, p.From)); it.Valid(); it.Next() {
			id, ok := parseLogKey(it.Item().Key())
			if !ok || !idAfter(id, p.From) {
				continue
			}
			if !p.Last && idAfter(id, p.To) {
				break
			}
			if !p.Horizon.Contains(id) {
				continue
			}
			var c Change
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				it.Close()
				return fmt.Errorf("decode change %s: %w", id, err)
			}
			if c.Kind != ChangeAdd || keep[c.Item] {
				continue
			}
			uid, held, err := getUID(txn, itemKey('m', rec.ID, c.Item))
			if err != nil {
				it.Close()
				return err
			}
			if held {
				dead = append(dead, c.Item)
				touched[uid] = true
			}
		}
		it.Close()
		for _, item := range dead {
			if err := txn.Delete(itemKey('m', rec.ID, item)); err != nil {
				return err
			}
			// No delete change to name: the tombstone says only
			// "deleted" (a late add of it is still refused).
			if err := setJSON(txn, itemKey('t', rec.ID, item), ChangeID{}); err != nil {
				return err
			}
		}
		if len(touched) > 0 {
			// A post held under another item too stays while that one
			// is live (the same delivery stored by two replicas).
			prefix := idKey('m', rec.ID, 0)
			mit := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for mit.Rewind(); mit.Valid(); mit.Next() {
				uid, held, err := getUID(txn, mit.Item().KeyCopy(nil))
				if err != nil {
					mit.Close()
					return err
				}
				if held {
					delete(touched, uid)
				}
			}
			mit.Close()
			uids := slices.Sorted(func(yield func(uint32) bool) {
				for u := range touched {
					if !yield(u) {
						return
					}
				}
			})
			for _, uid := range uids {
				if ok, err := removeMessage(txn, rec.ID, uid, &ms); err != nil {
					return err
				} else if ok {
					gone = append(gone, uid)
				}
			}
		}
		kn.Union(p.Grant)
		if err := setJSON(txn, knowKey(rec.ID), kn); err != nil {
			return err
		}
		if p.Last {
			return txn.Delete(resyncKey(rec.ID, source))
		}
		return setJSON(txn, resyncKey(rec.ID, source), ResyncCursor{Horizon: p.Horizon, After: p.To})
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

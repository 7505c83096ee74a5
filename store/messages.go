package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MessageInfo is a message's index entry.
type MessageInfo struct {
	UID   uint32
	Size  int64
	Date  time.Time
	Class string
	Flags []string
	// ModSeq is the modseq of the message's last change the viewer can
	// see (modseq.go); Added the modseq of its add.
	ModSeq, Added uint64

	// Where the text is (see BodiesOf); fixed for the message's life.
	body   uint64
	chunks uint32
}

// Messages lists a mailbox's messages in UID order with the mailbox's own
// flags (for public folders, whose flags are per user, none: see
// MessagesAs).
func (s *Store) Messages(ctx context.Context, ref MailboxRef) ([]MessageInfo, error) {
	return s.MessagesAs(ctx, ref, "")
}

// MessagesAs lists a mailbox's messages in UID order with the flags viewer
// sees: a user mailbox's own flags, or viewer's private flags on a public
// folder post.
func (s *Store) MessagesAs(ctx context.Context, ref MailboxRef, viewer string) ([]MessageInfo, error) {
	_, out, err := s.Snapshot(ctx, ref, viewer)
	return out, err
}

// Snapshot reads a mailbox's counters and its messages in UID order (with
// the flags viewer sees) in one consistent read: UIDNext is above every
// listed UID and Messages is the length of the list.
func (s *Store) Snapshot(ctx context.Context, ref MailboxRef, viewer string) (Status, []MessageInfo, error) {
	ref = ref.normalize()
	var st Status
	var out []MessageInfo
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		st.UIDValidity, st.UIDNext = rec.UIDValidity, rec.UIDNext
		if !ref.Public() {
			viewer = ""
		}
		if st.HighestModSeq, err = highestModSeq(txn, rec.ID, viewer); err != nil {
			return err
		}
		var priv map[uint32]privFlags
		if ref.Public() && viewer != "" {
			if priv, err = privateFlags(txn, rec.ID, viewer); err != nil {
				return err
			}
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(rec.ID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m messageRecord
			if err := getJSON(txn, it.Item().Key(), &m); err != nil {
				return err
			}
			uid := uidOfMsgKey(it.Item().Key())
			flags, modSeq, added := m.Flags, max(m.ModSeq, 1), max(m.ModSeq, 1)
			if m.Added != 0 {
				added = m.Added
			}
			if ref.Public() {
				p := priv[uid]
				flags, modSeq = p.Flags, max(modSeq, p.ModSeq)
			}
			out = append(out, MessageInfo{UID: uid, Size: m.Size, Date: m.Date, Class: m.Class, Flags: flags, ModSeq: modSeq, Added: added, body: m.Body, chunks: m.Chunks})
			st.Messages++
			st.Size += m.Size
		}
		return nil
	})
	if err != nil {
		return Status{}, nil, fmt.Errorf("list messages of %s: %w", ref, err)
	}
	return st, out, nil
}

func privateFlags(txn *badger.Txn, mbox uint64, viewer string) (map[uint32]privFlags, error) {
	out := map[uint32]privFlags{}
	prefix := viewerPrefix('p', mbox, viewer)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var p privFlags
		if err := getJSON(txn, it.Item().Key(), &p); err != nil {
			return nil, err
		}
		out[uidOfMsgKey(it.Item().Key())] = p
	}
	return out, nil
}

// Body returns a message's full RFC 5322 text.
func (s *Store) Body(ctx context.Context, ref MailboxRef, uid uint32) ([]byte, error) {
	ref = ref.normalize()
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		out, err = readBody(txn, rec.ID, uid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read message %d of %s: %w", uid, ref, err)
	}
	return out, nil
}

// batch is how many records one flag/expunge commit changes, well under
// badger's transaction size limit.
const batch = 500

// SetFlags changes the flags of messages as viewer sees them (on public
// folders, viewer's private flags). It returns the new flags of each
// message that exists.
func (s *Store) SetFlags(ctx context.Context, ref MailboxRef, viewer string, uids []uint32, op FlagOp, flags []string) (map[uint32][]string, error) {
	res, err := s.UpdateFlags(ctx, ref, viewer, uids, op, flags, nil)
	return res.Flags, err
}

// FlagsResult is what UpdateFlags did.
type FlagsResult struct {
	Flags  map[uint32][]string // the flags of each message that exists, changed or not
	ModSeq map[uint32]uint64   // the modseq of each of them (modseq.go)
	// Modified lists, in the order given, the messages left alone
	// because they changed after the caller's unchangedSince.
	Modified []uint32
}

// UpdateFlags is SetFlags with modseqs (CONDSTORE, RFC 7162): a message
// whose flags change gets a new modseq, and with unchangedSince set a
// message whose modseq is above *unchangedSince is not changed but listed
// in Modified, checked in the same transaction as the change.
func (s *Store) UpdateFlags(ctx context.Context, ref MailboxRef, viewer string, uids []uint32, op FlagOp, flags []string, unchangedSince *uint64) (FlagsResult, error) {
	ref = ref.normalize()
	res := FlagsResult{Flags: make(map[uint32][]string, len(uids)), ModSeq: make(map[uint32]uint64, len(uids))}
	rec, err := s.view(ref)
	if err != nil {
		return res, err
	}
	if !ref.Public() {
		viewer = ""
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	for start := 0; start < len(uids); start += batch {
		part := uids[start:min(start+batch, len(uids))]
		type done struct {
			uid      uint32
			flags    []string
			modSeq   uint64
			modified bool
		}
		var got []done
		err := s.db.Update(func(txn *badger.Txn) error {
			got = got[:0]
			ms := modSeqAlloc{s: s}
			var kn CNSet
			if ref.Public() && viewer != "" {
				var err error
				if kn, err = loadCNSet(txn, rec.ID); err != nil {
					return err
				}
			}
			for _, uid := range part {
				var m messageRecord
				if err := getJSON(txn, msgKey(rec.ID, uid), &m); err != nil {
					if errors.Is(err, badger.ErrKeyNotFound) {
						continue // expunged meanwhile
					}
					return err
				}
				if !ref.Public() {
					cur := max(m.ModSeq, 1)
					if unchangedSince != nil && cur > *unchangedSince {
						got = append(got, done{uid: uid, flags: m.Flags, modSeq: cur, modified: true})
						continue
					}
					next := applyFlags(m.Flags, op, flags)
					if slices.Equal(next, m.Flags) {
						got = append(got, done{uid: uid, flags: m.Flags, modSeq: cur})
						continue
					}
					n, err := ms.next(txn, rec.ID, "")
					if err != nil {
						return err
					}
					if m.Added == 0 {
						m.Added = cur
					}
					m.Flags, m.ModSeq = next, n
					got = append(got, done{uid: uid, flags: m.Flags, modSeq: n})
					if err := setJSON(txn, msgKey(rec.ID, uid), m); err != nil {
						return err
					}
					continue
				}
				key := privFlagsKey(rec.ID, viewer, uid)
				var p privFlags
				if err := getJSON(txn, key, &p); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				cur := max(m.ModSeq, p.ModSeq, 1)
				if unchangedSince != nil && cur > *unchangedSince {
					got = append(got, done{uid: uid, flags: p.Flags, modSeq: cur, modified: true})
					continue
				}
				next := applyFlags(p.Flags, op, flags)
				if slices.Equal(next, NormalizeFlags(p.Flags)) {
					got = append(got, done{uid: uid, flags: p.Flags, modSeq: cur})
					continue
				}
				if kn != nil {
					if err := s.trackFlags(txn, ref, rec.ID, kn, m, viewer, next); err != nil {
						return err
					}
				}
				n, err := ms.next(txn, rec.ID, viewer)
				if err != nil {
					return err
				}
				got = append(got, done{uid: uid, flags: next, modSeq: n})
				// The record stays when no flag is left: it holds the
				// modseq of the change.
				if err := setJSON(txn, key, privFlags{Flags: next, ModSeq: n}); err != nil {
					return err
				}
			}
			if kn != nil {
				return setJSON(txn, knowKey(rec.ID), kn)
			}
			return nil
		})
		if err != nil {
			if start > 0 {
				// Earlier batches are committed: sessions must hear of them.
				s.notify.publish(rec.ID, Event{Kind: EventFlags, Viewer: viewer})
			}
			return res, fmt.Errorf("set flags in %s: %w", ref, err)
		}
		for _, d := range got {
			res.Flags[d.uid], res.ModSeq[d.uid] = d.flags, d.modSeq
			if d.modified {
				res.Modified = append(res.Modified, d.uid)
			}
		}
	}
	s.notify.publish(rec.ID, Event{Kind: EventFlags, Viewer: viewer})
	if ref.Public() {
		s.changed(ref)
	}
	return res, nil
}

// Expunge removes messages for good and returns the UIDs removed.
func (s *Store) Expunge(ctx context.Context, ref MailboxRef, uids []uint32) ([]uint32, error) {
	ref = ref.normalize()
	rec, err := s.view(ref)
	if err != nil {
		return nil, err
	}
	var removed []uint32
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	for start := 0; start < len(uids); start += batch {
		part := uids[start:min(start+batch, len(uids))]
		var done []uint32
		err := s.db.Update(func(txn *badger.Txn) error {
			done = done[:0]
			ms := modSeqAlloc{s: s}
			var kn CNSet
			if ref.Public() {
				var err error
				if kn, err = loadCNSet(txn, rec.ID); err != nil {
					return err
				}
			}
			for _, uid := range part {
				var m messageRecord
				if err := getJSON(txn, msgKey(rec.ID, uid), &m); err != nil {
					if errors.Is(err, badger.ErrKeyNotFound) {
						continue
					}
					return err
				}
				if kn != nil {
					if err := s.trackDelete(txn, ref, rec.ID, kn, m); err != nil {
						return err
					}
				}
				if _, err := removeMessage(txn, rec.ID, uid, &ms); err != nil {
					return err
				}
				done = append(done, uid)
			}
			if kn != nil {
				return setJSON(txn, knowKey(rec.ID), kn)
			}
			return nil
		})
		if err != nil {
			// Earlier batches are committed: sessions must hear of them.
			for _, uid := range removed {
				s.notify.publish(rec.ID, Event{Kind: EventExpunge, UID: uid})
			}
			return removed, fmt.Errorf("expunge from %s: %w", ref, err)
		}
		removed = append(removed, done...)
	}
	if ref.Public() && len(removed) > 0 {
		if err := s.dropPrivateFlags(rec.ID, removed); err != nil {
			s.log.Warn("drop private flags of expunged posts", "mailbox", ref.String(), "err", err)
		}
	}
	for _, uid := range removed {
		s.notify.publish(rec.ID, Event{Kind: EventExpunge, UID: uid})
	}
	if ref.Public() && len(removed) > 0 {
		s.changed(ref)
	}
	return removed, nil
}

func (s *Store) dropPrivateFlags(mbox uint64, uids []uint32) error {
	var keys [][]byte
	prefix := idKey('p', mbox, 0)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if slices.Contains(uids, uidOfMsgKey(it.Item().Key())) {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for start := 0; start < len(keys); start += batch {
		part := keys[start:min(start+batch, len(keys))]
		if err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range part {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// CopyResult pairs source and destination UIDs of a copy.
type CopyResult struct {
	UIDValidity uint32 // of the destination
	Source      []uint32
	Dest        []uint32
}

// Copy copies messages (with the flags viewer sees, and their dates) to
// another mailbox, in UID order.
func (s *Store) Copy(ctx context.Context, src, dst MailboxRef, viewer string, uids []uint32) (CopyResult, error) {
	src, dst = src.normalize(), dst.normalize()
	var res CopyResult
	drec, err := s.view(dst)
	if err != nil {
		return res, err
	}
	res.UIDValidity = drec.UIDValidity
	msgs, err := s.MessagesAs(ctx, src, viewer)
	if err != nil {
		return res, err
	}
	want := slices.Clone(uids)
	slices.Sort(want)
	for _, m := range msgs {
		if _, ok := slices.BinarySearch(want, m.UID); !ok {
			continue
		}
		body, err := s.Body(ctx, src, m.UID)
		if errors.Is(err, ErrNoMessage) {
			continue // expunged meanwhile
		}
		if err != nil {
			return res, err
		}
		uid, _, err := s.add(ctx, dst, addArgs{class: m.Class, date: m.Date, body: body, flags: m.Flags, viewer: viewer})
		if err != nil {
			return res, err
		}
		res.Source = append(res.Source, m.UID)
		res.Dest = append(res.Dest, uid)
	}
	return res, nil
}

// ClaimRecent implements \Recent: the first session of viewer to look at a
// mailbox after a message arrived sees it as recent. It returns the range
// (from, to]: messages with from < UID <= to are recent for the caller, and
// no later call by the same viewer will report them again.
func (s *Store) ClaimRecent(ctx context.Context, ref MailboxRef, viewer string) (from, to uint32, err error) {
	ref = ref.normalize()
	rec, err := s.view(ref)
	if err != nil {
		return 0, 0, err
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	err = s.db.Update(func(txn *badger.Txn) error {
		cur, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		key := recentKey(cur.ID, viewer)
		if item, err := txn.Get(key); err == nil {
			if err := item.Value(func(b []byte) error {
				if len(b) == 4 {
					from = binary.BigEndian.Uint32(b)
				}
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		to = cur.UIDNext - 1
		if to <= from {
			to = from
			return nil
		}
		return txn.Set(key, binary.BigEndian.AppendUint32(nil, to))
	})
	if err != nil {
		return 0, 0, fmt.Errorf("claim recent messages of %s: %w", ref, err)
	}
	return from, to, nil
}

// RecentWatermark returns the highest UID viewer's sessions have claimed
// as recent, without claiming anything (EXAMINE and STATUS use it: messages
// above it are still recent).
func (s *Store) RecentWatermark(ctx context.Context, ref MailboxRef, viewer string) (uint32, error) {
	ref = ref.normalize()
	var w uint32
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		item, err := txn.Get(recentKey(rec.ID, viewer))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) == 4 {
				w = binary.BigEndian.Uint32(b)
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("read recent watermark of %s: %w", ref, err)
	}
	return w, nil
}

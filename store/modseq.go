package store

// Mod-sequences for IMAP CONDSTORE and QRESYNC (RFC 7162). Every change a
// client can see — a message added, its flags changed, a message expunged
// — gets a mod-sequence (modseq) in the same transaction as the change:
//
//	h/<id>              -> the mailbox's HIGHESTMODSEQ (8 bytes): adds and expunges,
//	                       and in a user mailbox flag changes too
//	h/<id><viewer>\0    -> public folders: the highest modseq of viewer's own
//	                       flag changes (flags there are per user, SPEC A7)
//	e/<id><uid>         -> the modseq at which uid was expunged (VANISHED)
//
// A message's modseq is in its record (messageRecord.ModSeq, set at add and
// at each change of a user mailbox message's flags); on a public folder it
// is the later of the post's and of the viewer's private flag record's. A
// viewer's HIGHESTMODSEQ is the higher of h/<id> and h/<id><viewer>, so one
// user's flag changes are never another user's changes.
//
// Modseqs come from the store's change number clock (changes.go): above
// every one issued before, across restarts. They are allocated under the
// mailbox lock and committed before it is released, so a mailbox's
// modseqs become visible in increasing order: a client that saw
// HIGHESTMODSEQ n never later finds a change at or below n. One
// transaction uses one modseq for all it changes (RFC 7162 allows
// messages changed together to share it). Records written before modseqs
// existed read as modseq 1.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

func highestKey(mbox uint64, viewer string) []byte {
	if viewer == "" {
		return idKey('h', mbox, 0)
	}
	return viewerPrefix('h', mbox, viewer)
}

func expungedKey(mbox uint64, uid uint32) []byte {
	return binary.BigEndian.AppendUint32(idKey('e', mbox, 4), uid)
}

func getUint64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}

// modSeqAlloc hands out the one modseq of a transaction, allocated at its
// first change.
type modSeqAlloc struct {
	s *Store
	n uint64
}

// next returns the transaction's modseq and records it as the highest of
// mbox (viewer "") or of viewer's flag changes in mbox.
func (a *modSeqAlloc) next(txn *badger.Txn, mbox uint64, viewer string) (uint64, error) {
	if a.n == 0 {
		a.n = a.s.nextCN()
		if err := txn.Set(cnKey, binary.BigEndian.AppendUint64(nil, a.n)); err != nil {
			return 0, err
		}
	}
	return a.n, txn.Set(highestKey(mbox, viewer), binary.BigEndian.AppendUint64(nil, a.n))
}

// expunged records uid's expunge at the transaction's modseq.
func (a *modSeqAlloc) expunged(txn *badger.Txn, mbox uint64, uid uint32) error {
	n, err := a.next(txn, mbox, "")
	if err != nil {
		return err
	}
	return txn.Set(expungedKey(mbox, uid), binary.BigEndian.AppendUint64(nil, n))
}

// highestModSeq is viewer's HIGHESTMODSEQ of mbox (viewer "" for a user
// mailbox or the shared part of a public folder); at least 1.
func highestModSeq(txn *badger.Txn, mbox uint64, viewer string) (uint64, error) {
	h, err := getUint64(txn, highestKey(mbox, ""))
	if err != nil {
		return 0, err
	}
	if viewer != "" {
		v, err := getUint64(txn, highestKey(mbox, viewer))
		if err != nil {
			return 0, err
		}
		h = max(h, v)
	}
	return max(h, 1), nil
}

// privFlags is a viewer's flags on a public folder post (p/ keys) and the
// modseq of their last change. Records of older versions are a bare JSON
// list of flags.
type privFlags struct {
	Flags  []string `json:"f,omitempty"`
	ModSeq uint64   `json:"m,omitempty"`
}

func (p *privFlags) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &p.Flags)
	}
	type plain privFlags
	return json.Unmarshal(b, (*plain)(p))
}

// ExpungedSince lists, in UID order, the UIDs expunged from a mailbox at a
// modseq above modSeq (QRESYNC's VANISHED (EARLIER)).
func (s *Store) ExpungedSince(ctx context.Context, ref MailboxRef, modSeq uint64) ([]uint32, error) {
	ref = ref.normalize()
	var out []uint32
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		prefix := idKey('e', rec.ID, 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var n uint64
			if err := it.Item().Value(func(b []byte) error {
				if len(b) == 8 {
					n = binary.BigEndian.Uint64(b)
				}
				return nil
			}); err != nil {
				return err
			}
			if n > modSeq {
				out = append(out, uidOfMsgKey(it.Item().Key()))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list expunged messages of %s: %w", ref, err)
	}
	return out, nil
}

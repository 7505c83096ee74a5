package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Batch limits of Bodies and BodiesOf: one read transaction serves up to
// this many messages or bytes, and fn runs outside it, so a slow reader (a
// client draining a big FETCH) neither pins a transaction nor makes the
// store hold many bodies.
const (
	bodiesBatch      = 128
	bodiesBatchBytes = 4 << 20
)

// Bodies reads the full RFC 5322 text of messages in the order given and
// calls fn with each: ok is false for a message that does not exist (it was
// expunged). The mailbox is looked up once per batch rather than once per
// message as Body does. An error from fn stops the walk and is returned.
func (s *Store) Bodies(ctx context.Context, ref MailboxRef, uids []uint32, fn func(uid uint32, body []byte, ok bool) error) error {
	ref = ref.normalize()
	var mbox uint64
	err := s.readBatched(ctx, len(uids),
		func(txn *badger.Txn) error {
			rec, err := lookup(txn, ref)
			if err == nil {
				mbox = rec.ID
			}
			return err
		},
		func(txn *badger.Txn, k int) ([]byte, error) { return readBody(txn, mbox, uids[k]) },
		func(k int, body []byte, ok bool) error { return fn(uids[k], body, ok) })
	if err != nil {
		return fmt.Errorf("read messages of %s: %w", ref, err)
	}
	return nil
}

// BodiesOf is Bodies for messages listed by Snapshot (or Messages,
// MessagesAs): their MessageInfo carries where the text is, which never
// changes while the message exists, so no mailbox or message record is
// read (the cost of a whole-mailbox FETCH is then mostly the bytes). A
// message expunged since it was listed gets ok false, as in Bodies. A
// MessageInfo not from the store is an error.
func (s *Store) BodiesOf(ctx context.Context, msgs []MessageInfo, fn func(uid uint32, body []byte, ok bool) error) error {
	for _, m := range msgs {
		if m.chunks == 0 {
			return fmt.Errorf("read message %d: its MessageInfo was not listed by the store", m.UID)
		}
	}
	return s.readBatched(ctx, len(msgs), nil,
		func(txn *badger.Txn, k int) ([]byte, error) {
			m := msgs[k]
			return readChunks(txn, m.UID, m.body, m.chunks, m.Size)
		},
		func(k int, body []byte, ok bool) error { return fn(msgs[k].UID, body, ok) })
}

// readBatched reads n bodies with read, a batch per read transaction
// (after start, if set, in the same transaction), and hands them to fn in
// order outside the transaction. ErrNoMessage from read means ok false.
func (s *Store) readBatched(ctx context.Context, n int, start func(*badger.Txn) error,
	read func(txn *badger.Txn, k int) ([]byte, error), fn func(k int, body []byte, ok bool) error) error {
	type got struct {
		body []byte
		ok   bool
	}
	var part []got
	for next := 0; next < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		first := next
		part = part[:0]
		err := s.db.View(func(txn *badger.Txn) error {
			if start != nil {
				if err := start(txn); err != nil {
					return err
				}
			}
			var size int
			for next < n && len(part) < bodiesBatch && size < bodiesBatchBytes {
				b, err := read(txn, next)
				if err != nil && !errors.Is(err, ErrNoMessage) {
					return err
				}
				part = append(part, got{body: b, ok: err == nil})
				size += len(b)
				next++
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, g := range part {
			if err := fn(first+i, g.body, g.ok); err != nil {
				return err
			}
		}
	}
	return nil
}

// readBody reads one message's text inside txn; ErrNoMessage if the
// message does not exist.
func readBody(txn *badger.Txn, mbox uint64, uid uint32) ([]byte, error) {
	var m messageRecord
	if err := getJSON(txn, msgKey(mbox, uid), &m); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("uid %d: %w", uid, ErrNoMessage)
		}
		return nil, err
	}
	b, err := readChunks(txn, uid, m.Body, m.Chunks, m.Size)
	if errors.Is(err, ErrNoMessage) {
		// The record names chunks that are not there: corruption, not an
		// expunge (both go in one transaction).
		return nil, fmt.Errorf("body of uid %d is missing: %w", uid, badger.ErrKeyNotFound)
	}
	return b, err
}

// readChunks reads a body's chunks. A missing chunk means the message was
// expunged (its record and chunks go in one transaction): ErrNoMessage.
func readChunks(txn *badger.Txn, uid uint32, body uint64, chunks uint32, size int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size))
	for c := uint32(0); c < chunks; c++ {
		item, err := txn.Get(bodyKey(body, c))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("uid %d: %w", uid, ErrNoMessage)
		}
		if err != nil {
			return nil, fmt.Errorf("body chunk %d of uid %d: %w", c, uid, err)
		}
		if err := item.Value(func(b []byte) error { buf.Write(b); return nil }); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

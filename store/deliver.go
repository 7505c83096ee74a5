package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"

	"pfrouter/internal/kv"
)

// chunkSize bounds the body bytes written in one transaction, leaving room
// under kv.MaxBatch for the records that go with the last chunk.
const chunkSize = kv.MaxBatch - 64<<10

// Chunks stay below kv.MaxInline: the store's database has no value log
// (store.Open), so a larger value would be written but not synced.
var _ [kv.MaxInline - chunkSize - 1]struct{}

// Delivery is one message to store.
type Delivery struct {
	Store  string    // store name (mailbox or public store)
	User   string    // mailbox stores: the user name; "" for public stores
	Folder string    // public stores: folder path e.g. "/Sales/Announcements"; mailbox stores: "" means INBOX
	ID     string    // idempotency key: delivering the same ID to the same mailbox twice stores one copy
	Class  string    // message class: "IPM.Post" or "IPM.Note" (SPEC R16)
	Date   time.Time // internal date
	Body   []byte    // full RFC 5322 message
}

// Ref is the mailbox a delivery goes to.
func (d Delivery) Ref() MailboxRef {
	name := d.Folder
	if d.User != "" && name == "" {
		name = "INBOX"
	}
	return MailboxRef{Store: d.Store, User: d.User, Name: name}.normalize()
}

// Deliver appends a message durably (fsync'd before return) with the next
// UID of the mailbox, creating the mailbox if needed; dup=true and no new
// copy if ID was already delivered to that mailbox (even if the copy was
// expunged since: a retried delivery must not resurrect it).
func (s *Store) Deliver(ctx context.Context, d Delivery) (uid uint32, dup bool, err error) {
	ref := d.Ref()
	if !ref.valid() {
		return 0, false, fmt.Errorf("deliver to %s: %w", ref, ErrBadName)
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	rec, err := s.ensure(ref, "")
	if err != nil {
		return 0, false, fmt.Errorf("deliver to %s: %w", ref, err)
	}
	// A body of one chunk is checked for a duplicate only inside the
	// commit (writeGroup reads the dedup record there anyway); a longer
	// one is checked first, so a duplicate writes no chunks ahead.
	if d.ID != "" && len(d.Body) > chunkSize {
		if uid, ok := s.delivered(rec.ID, d.ID); ok {
			return uid, true, nil
		}
	}
	return s.add(ctx, ref, addArgs{id: d.ID, class: d.Class, date: d.Date, body: d.Body, rec: rec})
}

func (s *Store) delivered(mbox uint64, id string) (uint32, bool) {
	var uid uint32
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(dedupKey(mbox, id))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			uid, _ = parseDedup(b)
			return nil
		})
	})
	return uid, err == nil
}

// AppendOptions are the optional attributes of an appended message.
type AppendOptions struct {
	Flags  []string
	Date   time.Time // zero: now
	Class  string    // "" means IPM.Note
	Viewer string    // public folders: the user whose private flags Flags are
}

// Append adds a message to an existing mailbox (IMAP APPEND).
func (s *Store) Append(ctx context.Context, ref MailboxRef, body []byte, opts AppendOptions) (uid uint32, uidValidity uint32, err error) {
	ref = ref.normalize()
	rec, err := s.view(ref)
	if err != nil {
		return 0, 0, err
	}
	uid, _, err = s.add(ctx, ref, addArgs{class: opts.Class, date: opts.Date, body: body, flags: opts.Flags, viewer: opts.Viewer, rec: rec})
	return uid, rec.UIDValidity, err
}

// AppendFrom is Append for a body read from r, exactly size bytes: the
// body goes to the store one chunk at a time, so a large message (IMAP
// APPEND spooled to a file) never sits whole in memory. A short read
// stores nothing.
func (s *Store) AppendFrom(ctx context.Context, ref MailboxRef, r io.Reader, size int64, opts AppendOptions) (uid uint32, uidValidity uint32, err error) {
	ref = ref.normalize()
	rec, err := s.view(ref)
	if err != nil {
		return 0, 0, err
	}
	uid, _, err = s.add(ctx, ref, addArgs{class: opts.Class, date: opts.Date, src: r, size: size, flags: opts.Flags, viewer: opts.Viewer, rec: rec})
	return uid, rec.UIDValidity, err
}

type addArgs struct {
	id, class, viewer string
	date              time.Time
	body              []byte
	// src and size replace body for a streamed message (AppendFrom).
	src   io.Reader
	size  int64
	flags []string
	// rec, when set, is the mailbox as the caller just read it: the first
	// commit attempt uses it instead of reading it again (the commit
	// re-checks it inside its transaction either way).
	rec *mailboxRecord
	// remote, when set, is the replicated post this message is (Apply).
	remote *Change
}

// add writes a message: body chunks that do not fit with the records go
// first in their own commits, and the index record last, so a crash never
// shows a half message (orphan chunks are invisible garbage). The last
// commit is shared with the other messages waiting on the mailbox.
func (s *Store) add(ctx context.Context, ref MailboxRef, a addArgs) (uint32, bool, error) {
	r, err := s.prepareAdd(ctx, ref, a)
	if err != nil {
		return 0, false, err
	}
	for attempt := 0; ; attempt++ {
		rec, err := a.rec, error(nil)
		if attempt > 0 || rec == nil {
			rec, err = s.view(ref)
		}
		if err != nil {
			s.dropChunks(r.msg.Body, r.msg.Chunks-1)
			return 0, false, err
		}
		r.mbox, r.done = rec.ID, false
		s.commitAdd(r)
		if errors.Is(r.err, errRetry) && attempt < 3 {
			continue
		}
		break
	}
	return s.finishAdd(r)
}

// prepareAdd writes the body chunks that do not fit with the records and
// returns the request for the group commit.
func (s *Store) prepareAdd(ctx context.Context, ref MailboxRef, a addArgs) (*addReq, error) {
	if a.date.IsZero() {
		a.date = time.Now()
	}
	if a.class == "" {
		a.class = "IPM.Note"
	}
	body, err := s.bodies.Next()
	if err != nil {
		return nil, fmt.Errorf("allocate body id: %w", err)
	}
	size := int64(len(a.body))
	if a.src != nil {
		size = a.size
	}
	chunks := uint32((size + chunkSize - 1) / chunkSize)
	if chunks == 0 {
		chunks = 1
	}
	// part returns chunk c: a slice of body, or the next bytes of src.
	var buf []byte
	part := func(c uint32) ([]byte, error) {
		start, end := int64(c)*chunkSize, min(int64(c+1)*chunkSize, size)
		if a.src == nil {
			return a.body[start:end], nil
		}
		buf = make([]byte, end-start) // fresh: badger keeps the slice until commit
		if _, err := io.ReadFull(a.src, buf); err != nil {
			return nil, fmt.Errorf("read message body: %w", err)
		}
		return buf, nil
	}
	for c := uint32(0); c+1 < chunks; c++ {
		if err := ctx.Err(); err != nil {
			s.dropChunks(body, c)
			return nil, err
		}
		p, err := part(c)
		if err != nil {
			s.dropChunks(body, c)
			return nil, err
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(bodyKey(body, c), p) }); err != nil {
			s.dropChunks(body, c)
			return nil, fmt.Errorf("write body chunk %d of %s: %w", c, ref, err)
		}
	}
	last, err := part(chunks - 1)
	if err != nil {
		s.dropChunks(body, chunks-1)
		return nil, err
	}
	msg := messageRecord{Size: size, Date: a.date.UTC(), Class: a.class, Body: body, Chunks: chunks, ID: a.id}
	flags := NormalizeFlags(a.flags)
	if !ref.Public() {
		msg.Flags = flags
	}
	// The last chunk and the records go through the mailbox's group
	// commit (commit.go): one transaction and one fsync for every message
	// waiting on the mailbox.
	return &addReq{ref: ref, msg: msg, last: last, flags: flags, viewer: a.viewer, remote: a.remote}, nil
}

// finishAdd answers a committed request, dropping the chunks written
// ahead of a message that was not stored.
func (s *Store) finishAdd(r *addReq) (uint32, bool, error) {
	if r.err != nil {
		s.dropChunks(r.msg.Body, r.msg.Chunks-1)
		return 0, false, fmt.Errorf("store message in %s: %w", r.ref, r.err)
	}
	if r.dup {
		s.dropChunks(r.msg.Body, r.msg.Chunks-1)
		return r.uid, true, nil
	}
	return r.uid, false, nil
}

var errRetry = errors.New("mailbox changed, retry")

// dropChunks removes body chunks written ahead of a message that was not
// stored after all (best effort: leftovers are unreachable).
func (s *Store) dropChunks(body uint64, n uint32) {
	if n == 0 {
		return
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for c := uint32(0); c < n; c++ {
			if err := txn.Delete(bodyKey(body, c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("drop orphan body chunks", "body", body, "err", err)
	}
}

func deleteBody(txn *badger.Txn, m messageRecord) error {
	for c := uint32(0); c < m.Chunks; c++ {
		if err := txn.Delete(bodyKey(m.Body, c)); err != nil {
			return err
		}
	}
	return nil
}

package imapd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// APPEND, of one message or several (MULTIAPPEND, RFC 3502), is a
// transaction: every literal is received whole first (small ones in
// memory, the rest spooled to disk), and only then are the messages
// stored, in order. A literal cut off, refused or failing to store leaves
// no message behind: the ones already stored by that command are
// expunged again. Other sessions may glimpse such a message between its
// store and its expunge; that only happens when the store fails midway.

const (
	// spoolThreshold is the literal size above which APPEND writes the
	// message to a temporary file as it arrives: memory per APPEND stays
	// one store chunk however large or slow the upload.
	spoolThreshold = 1 << 20
	// appendMemory bounds the literals one APPEND holds in memory; past
	// it, even small ones are spooled.
	appendMemory = 4 << 20
	// maxAppendMessages bounds the messages of one MULTIAPPEND.
	maxAppendMessages = 1000
)

// appendTx is one APPEND command's messages (imapserver.AppendTx).
type appendTx struct {
	s     *session
	t     *target
	items []appendItem
	inMem int64
}

// appendItem is one received message: body in memory, or file spooled.
type appendItem struct {
	body    []byte
	file    *os.File
	size    int64
	options imap.AppendOptions
}

// reader reads the item from its start.
func (it *appendItem) reader() (imap.LiteralReader, error) {
	if it.file == nil {
		return sizedReader{Reader: bytes.NewReader(it.body), size: it.size}, nil
	}
	if _, err := it.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read spooled APPEND literal: %w", err)
	}
	return sizedReader{Reader: bufio.NewReaderSize(it.file, 64<<10), size: it.size}, nil
}

type sizedReader struct {
	io.Reader
	size int64
}

func (r sizedReader) Size() int64 { return r.size }

func (s *session) BeginAppend(mailbox string) (imapserver.AppendTx, error) {
	t, err := s.insertable(mailbox)
	if err != nil {
		return nil, err
	}
	return &appendTx{s: s, t: t}, nil
}

// Append is APPEND of one message, as a transaction of one.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	tx, err := s.BeginAppend(mailbox)
	if err != nil {
		return nil, err
	}
	if err := tx.Add(r, options); err != nil {
		tx.Abort()
		return nil, err
	}
	data, err := tx.Commit()
	if err != nil {
		return nil, err
	}
	uids, _ := data.UIDs.Nums()
	if len(uids) == 0 {
		return nil, nil
	}
	return &imap.AppendData{UID: uids[0], UIDValidity: data.UIDValidity}, nil
}

func (tx *appendTx) Add(r imap.LiteralReader, options *imap.AppendOptions) error {
	if len(tx.items) >= maxAppendMessages {
		return errNo(imap.ResponseCodeLimit, fmt.Sprintf("At most %d messages per APPEND", maxAppendMessages))
	}
	it := appendItem{size: r.Size(), options: *options}
	if r.Size() <= spoolThreshold && tx.inMem+r.Size() <= appendMemory {
		body, err := readLiteral(r)
		if err != nil {
			return err
		}
		it.body = encodeBinary(body)
		it.size = int64(len(it.body))
		tx.inMem += r.Size()
	} else {
		f, err := spool(tx.s.srv.spoolDir, r)
		if err != nil {
			return err
		}
		it.file = f
	}
	tx.items = append(tx.items, it)
	return nil
}

// spool receives a literal into a temporary file, removed already (only
// the open file holds it).
func spool(dir string, r imap.LiteralReader) (*os.File, error) {
	f, err := os.CreateTemp(dir, "pfrouter-append-*")
	if err != nil {
		return nil, fmt.Errorf("spool APPEND literal: %w", err)
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, r)
	if err == nil && n != r.Size() {
		err = fmt.Errorf("%w after %d of %d bytes", io.ErrUnexpectedEOF, n, r.Size())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("receive APPEND literal: %w", err)
	}
	return f, nil
}

func (tx *appendTx) Abort() {
	for _, it := range tx.items {
		if it.file != nil {
			it.file.Close()
		}
	}
	tx.items = nil
}

func (tx *appendTx) Commit() (*imapserver.MultiAppendData, error) {
	defer tx.Abort()
	if tx.t.remote {
		return tx.commitRemote()
	}
	ctx := context.Background()
	st := tx.s.srv.store
	data := &imapserver.MultiAppendData{}
	var stored []uint32
	for i := range tx.items {
		it := &tx.items[i]
		opts := store.AppendOptions{Date: it.options.Time, Viewer: tx.s.user}
		for _, f := range it.options.Flags {
			opts.Flags = append(opts.Flags, string(f))
		}
		if tx.t.public {
			opts.Class = postClass
		}
		var (
			uid, uidValidity uint32
			err              error
		)
		if it.file == nil {
			uid, uidValidity, err = st.Append(ctx, tx.t.ref, it.body, opts)
		} else {
			var r imap.LiteralReader
			if r, err = it.reader(); err == nil {
				uid, uidValidity, err = st.AppendFrom(ctx, tx.t.ref, r, it.size, opts)
			}
		}
		if err != nil {
			if len(stored) > 0 {
				// All or none (RFC 3502): take back what this command stored.
				if _, xerr := st.Expunge(ctx, tx.t.ref, stored); xerr != nil {
					tx.s.srv.log.Error("APPEND failed midway and its first messages could not be removed", "mailbox", tx.t.name, "uids", stored, "err", xerr)
				}
			}
			return nil, storeErr(err, tx.t.name)
		}
		stored = append(stored, uid)
		data.UIDs.AddNum(imap.UID(uid))
		data.UIDValidity = uidValidity
	}
	return data, nil
}

// commitRemote posts to a referred folder's replica server. MULTIAPPEND
// is not passed on: the replica's APPENDs could not be taken back as one.
func (tx *appendTx) commitRemote() (*imapserver.MultiAppendData, error) {
	if len(tx.items) != 1 {
		return nil, errNo(imap.ResponseCodeCannot, "MULTIAPPEND to a public folder on another server is not supported: append one message at a time")
	}
	r, err := tx.items[0].reader()
	if err != nil {
		return nil, err
	}
	ad, err := tx.s.remoteAppend(tx.t, r, &tx.items[0].options)
	if err != nil || ad == nil {
		return nil, err
	}
	data := &imapserver.MultiAppendData{UIDValidity: ad.UIDValidity}
	data.UIDs.AddNum(ad.UID)
	return data, nil
}

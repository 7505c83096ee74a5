package imapd

import (
	"bufio"
	"bytes"
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"pfrouter/store"
)

// pick returns the view indexes a sequence or UID set names, in order.
// "*" is the last message; "$" is the last saved SEARCH result.
func (m *selected) pick(numSet imap.NumSet) []int {
	if imap.IsSearchRes(numSet) {
		numSet = m.searchRes
	}
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		set = staticSeq(set, uint32(len(m.uids)))
		for i := range m.uids {
			if set.Contains(uint32(i + 1)) {
				out = append(out, i)
			}
		}
	case imap.UIDSet:
		var last uint32
		if n := len(m.uids); n > 0 {
			last = m.uids[n-1]
		}
		set = staticUID(set, last)
		for i, uid := range m.uids {
			if set.Contains(imap.UID(uid)) {
				out = append(out, i)
			}
		}
	}
	return out
}

func staticSeq(set imap.SeqSet, max uint32) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		out[i] = imap.SeqRange{Start: r.Start, Stop: r.Stop}
		staticRange(&out[i].Start, &out[i].Stop, max)
	}
	return out
}

func staticUID(set imap.UIDSet, max uint32) imap.UIDSet {
	out := make(imap.UIDSet, len(set))
	for i, r := range set {
		start, stop := uint32(r.Start), uint32(r.Stop)
		staticRange(&start, &stop, max)
		out[i] = imap.UIDRange{Start: imap.UID(start), Stop: imap.UID(stop)}
	}
	return out
}

// staticRange replaces "*" (0) by max and orders the range.
func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func needsBody(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	m := s.sel
	ctx := context.Background()
	markSeen := false
	if !m.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	for _, i := range m.pick(numSet) {
		uid := m.uids[i]
		if m.ghosts[uid] {
			continue // expunged by another session; its EXPUNGE is pending
		}
		var body []byte
		if needsBody(options) {
			b, err := s.srv.store.Body(ctx, m.t.ref, uid)
			if errors.Is(err, store.ErrNoMessage) {
				m.ghosts[uid] = true
				continue
			}
			if err != nil {
				return err
			}
			body = b
		}
		seenNow := false
		if markSeen && !store.HasFlag(m.flags[uid], string(imap.FlagSeen)) {
			res, err := s.srv.store.SetFlags(ctx, m.t.ref, s.user, []uint32{uid}, store.FlagsAdd, []string{string(imap.FlagSeen)})
			if err != nil {
				return err
			}
			if f, ok := res[uid]; ok {
				m.flags[uid] = f
				seenNow = true
			}
		}
		if err := s.writeFetch(w.CreateMessage(uint32(i+1)), uid, body, options, seenNow); err != nil {
			return err
		}
	}
	return nil
}

// writeFetch writes one FETCH response. The writer holds the connection's
// output until Close, so everything is computed from memory here.
func (s *session) writeFetch(rw *imapserver.FetchResponseWriter, uid uint32, body []byte, options *imap.FetchOptions, seenNow bool) error {
	m := s.sel
	info := m.info[uid]
	if options.UID {
		rw.WriteUID(imap.UID(uid))
	}
	// A FETCH that sets \Seen reports the new flags even when not asked.
	if options.Flags || seenNow {
		rw.WriteFlags(s.flagList(uid))
	}
	if options.InternalDate {
		rw.WriteInternalDate(info.Date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(info.Size)
	}
	if options.Envelope {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
		if err != nil {
			h = textproto.Header{} // a message without a parsable header has an empty envelope
		}
		rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(body)))
	}
	for _, bs := range options.BodySection {
		buf := imapserver.ExtractBodySection(bytes.NewReader(body), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		buf := imapserver.ExtractBinarySection(bytes.NewReader(body), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(body), bss))
	}
	return rw.Close()
}

type writeCloser interface {
	Write([]byte) (int, error)
	Close() error
}

func writeLiteral(wc writeCloser, b []byte) error {
	_, werr := wc.Write(b)
	cerr := wc.Close()
	return errors.Join(werr, cerr)
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	m := s.sel
	if m.readOnly {
		return errNo(imap.ResponseCodeCannot, "Mailbox is read-only")
	}
	var op store.FlagOp
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsDel
	default:
		op = store.FlagsSet
	}
	names := make([]string, len(flags.Flags))
	for i, f := range flags.Flags {
		names[i] = string(f)
	}
	idx := m.pick(numSet)
	uids := make([]uint32, 0, len(idx))
	for _, i := range idx {
		if !m.ghosts[m.uids[i]] {
			uids = append(uids, m.uids[i])
		}
	}
	res, err := s.srv.store.SetFlags(context.Background(), m.t.ref, s.user, uids, op, names)
	if err != nil {
		return err
	}
	_, byUID := numSet.(imap.UIDSet)
	for _, i := range idx {
		uid := m.uids[i]
		f, ok := res[uid]
		if !ok {
			continue
		}
		m.flags[uid] = f
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		if byUID {
			rw.WriteUID(imap.UID(uid))
		}
		rw.WriteFlags(s.flagList(uid))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

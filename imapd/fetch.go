package imapd

import (
	"bufio"
	"bytes"
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"

	"pfrouter/internal/imapserver"
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

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	if s.rsel != nil {
		if options.ModSeq {
			return errNoModSeq
		}
		return s.remoteFetch(w, numSet, options)
	}
	m := s.sel
	ctx := context.Background()
	if s.qresync() {
		options.UID = true // RFC 7162 3.2.4
	}
	// The responses go out in few large writes; the tagged reply follows
	// them once Fetch returns.
	uncork := s.corkConn()
	defer func() {
		if uerr := uncork(); err == nil {
			err = uerr
		}
	}()
	var idx []int
	for _, i := range m.pick(numSet) {
		uid := m.uids[i]
		if m.ghosts[uid] {
			continue // a ghost's EXPUNGE is pending: skip it
		}
		if options.ChangedSince != 0 && m.info[uid].ModSeq <= options.ChangedSince {
			continue
		}
		idx = append(idx, i)
	}
	if w.Vanished() {
		if err := s.vanishedSince(w, numSet, options.ChangedSince); err != nil {
			return err
		}
	}
	seenNow, err := s.markSeen(ctx, idx, options)
	if err != nil {
		return err
	}
	if options.Flags {
		for _, i := range idx {
			if err := s.announceKeywords(w, m.flags[m.uids[i]]); err != nil {
				return err
			}
		}
	}
	if !needsBody(options) {
		for _, i := range idx {
			uid := m.uids[i]
			if err := s.writeFetch(w.CreateMessage(uint32(i+1)), uid, nil, options, seenNow[uid]); err != nil {
				return err
			}
		}
		return nil
	}
	// The view's MessageInfo says where each text is: no record is read.
	msgs := make([]store.MessageInfo, len(idx))
	for k, i := range idx {
		msgs[k] = m.info[m.uids[i]]
	}
	k := 0
	return s.srv.store.BodiesOf(ctx, msgs, func(uid uint32, body []byte, ok bool) error {
		i := idx[k]
		k++
		if !ok {
			m.ghosts[uid] = true // expunged by another session meanwhile
			return nil
		}
		return s.writeFetch(w.CreateMessage(uint32(i+1)), uid, body, options, seenNow[uid])
	})
}

// markSeen sets \Seen, in one store call, on the messages at view indexes
// idx that a non-PEEK body fetch returns, and says which ones it changed:
// their FETCH response reports the new flags.
func (s *session) markSeen(ctx context.Context, idx []int, options *imap.FetchOptions) (map[uint32]bool, error) {
	m := s.sel
	if m.readOnly {
		return nil, nil
	}
	mark := false
	for _, bs := range options.BodySection {
		mark = mark || !bs.Peek
	}
	for _, bs := range options.BinarySection {
		mark = mark || !bs.Peek
	}
	if !mark {
		return nil, nil
	}
	var uids []uint32
	for _, i := range idx {
		if uid := m.uids[i]; !store.HasFlag(m.flags[uid], string(imap.FlagSeen)) {
			uids = append(uids, uid)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	res, err := s.srv.store.UpdateFlags(ctx, m.t.ref, s.user, uids, store.FlagsAdd, []string{string(imap.FlagSeen)}, nil)
	if err != nil {
		return nil, err
	}
	m.updateModSeqs(res)
	seen := make(map[uint32]bool, len(res.Flags))
	for uid := range res.Flags {
		seen[uid] = true
	}
	return seen, nil
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
	// CONDSTORE: asked for, or flags reported to a client that enabled it.
	if options.ModSeq || (options.Flags || seenNow) && s.condStore() {
		rw.WriteModSeq(info.ModSeq)
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
		buf, ok := rawSection(body, bs)
		if !ok {
			buf = imapserver.ExtractBodySection(bytes.NewReader(body), bs)
		}
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

var (
	crlf     = []byte("\r\n")
	crlfCRLF = []byte("\r\n\r\n")
)

// rawSection answers the sections clients fetch most, BODY[] and
// BODY[HEADER] (no part, field list or partial), straight from the stored
// text: BODY[] is the message as stored (RFC 3501 6.4.5, and so exactly
// RFC822.SIZE bytes), BODY[HEADER] its header up to and including the
// first empty line. Parsing the header as ExtractBodySection does costs more
// than the rest of a FETCH. ok is false when the header is not plainly
// CRLF-terminated lines (empty, bare LF, no empty line): those take the
// parsing path.
func rawSection(body []byte, bs *imap.FetchItemBodySection) (b []byte, ok bool) {
	if len(bs.Part) > 0 || len(bs.HeaderFields) > 0 || len(bs.HeaderFieldsNot) > 0 || bs.Partial != nil {
		return nil, false
	}
	switch bs.Specifier {
	case imap.PartSpecifierNone:
		return body, true
	case imap.PartSpecifierHeader:
		if bytes.HasPrefix(body, crlf) {
			return nil, false
		}
		i := bytes.Index(body, crlfCRLF)
		if i < 0 {
			return nil, false
		}
		h := body[:i+len(crlfCRLF)]
		if bytes.Count(h, crlf[1:]) != bytes.Count(h, crlf) {
			return nil, false
		}
		return h, true
	}
	return nil, false
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
	unchangedSince, conditional := w.UnchangedSince()
	if s.rsel != nil {
		if conditional {
			return errNoModSeq
		}
		return s.remoteStore(w, numSet, flags, options)
	}
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
	var cond *uint64
	if conditional {
		cond = &unchangedSince
	}
	before := make(map[uint32]uint64, len(uids))
	for _, uid := range uids {
		before[uid] = m.info[uid].ModSeq
	}
	res, err := s.srv.store.UpdateFlags(context.Background(), m.t.ref, s.user, uids, op, names, cond)
	if err != nil {
		return err
	}
	_, byUID := numSet.(imap.UIDSet)
	for _, f := range res.Flags {
		if err := s.announceKeywords(w, f); err != nil {
			return err
		}
	}
	modified := make(map[uint32]bool, len(res.Modified))
	for _, uid := range res.Modified {
		modified[uid] = true
	}
	// A message refused by UNCHANGEDSINCE keeps the client's view: the
	// next Poll reports what changed it.
	applied := store.FlagsResult{Flags: map[uint32][]string{}, ModSeq: map[uint32]uint64{}}
	for uid, f := range res.Flags {
		if !modified[uid] {
			applied.Flags[uid], applied.ModSeq[uid] = f, res.ModSeq[uid]
		}
	}
	m.updateModSeqs(applied)
	condStore, qresync := s.condStore(), s.qresync()
	var (
		failedSeqs imap.SeqSet
		failedUIDs imap.UIDSet
	)
	for _, i := range idx {
		uid := m.uids[i]
		if modified[uid] {
			failedSeqs.AddNum(uint32(i + 1))
			failedUIDs.AddNum(imap.UID(uid))
			continue
		}
		if _, ok := applied.Flags[uid]; !ok {
			continue
		}
		// .SILENT still reports the new MODSEQ of a changed message to a
		// CONDSTORE client (RFC 7162 3.1.3).
		changed := applied.ModSeq[uid] != before[uid]
		if flags.Silent && !(condStore && changed) {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		if byUID || qresync {
			rw.WriteUID(imap.UID(uid))
		}
		if !flags.Silent {
			rw.WriteFlags(s.flagList(uid))
		}
		if condStore {
			rw.WriteModSeq(applied.ModSeq[uid])
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if len(res.Modified) > 0 {
		if byUID {
			w.SetModified(failedUIDs)
		} else {
			w.SetModified(failedSeqs)
		}
	}
	return nil
}

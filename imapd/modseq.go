package imapd

// CONDSTORE and QRESYNC (RFC 7162) over the store's mod-sequences
// (store/modseq.go). The fork (internal/imapserver/condstore.go) parses
// the commands and keeps the enabled state; this file is the session's
// side. A public folder's modseqs are the reading user's: another user's
// flag changes are not changes of this user's view (SPEC A7).
//
// Referred public folders (remote*.go) have no modseqs here: SELECT
// answers NOMODSEQ (RFC 7162 3.1.2.2), and the commands that need modseqs
// are refused. A session that enabled QRESYNC cannot select one: the
// referral path only knows expunges by sequence number, and a QRESYNC
// client must be told by UID (VANISHED).

import (
	"context"
	"slices"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

var _ imapserver.SessionCondStore = (*session)(nil)

// condStore: FETCH responses carry MODSEQ.
func (s *session) condStore() bool { return s.conn.EnabledCaps().Has(imap.CapCondStore) }

// qresync: FETCH responses carry UID, expunges are VANISHED.
func (s *session) qresync() bool { return s.conn.EnabledCaps().Has(imap.CapQResync) }

var errNoModSeq = errNo(imap.ResponseCodeCannot, "This folder is read from another server and has no mod-sequences (NOMODSEQ)")

// HighestModSeq is the selected mailbox's HIGHESTMODSEQ as of the last
// update the client was sent; 0 for a referred folder.
func (s *session) HighestModSeq() uint64 {
	if s.sel == nil {
		return 0
	}
	return s.sel.highestModSeq
}

// Resync answers SELECT (QRESYNC (uidvalidity modseq [known-uids] ...)):
// the known messages expunged since modseq as VANISHED (EARLIER), then
// FETCH (UID FLAGS MODSEQ) of every message it had whose flags changed
// since. Nothing when UIDVALIDITY changed: the client starts over.
func (s *session) Resync(w *imapserver.FetchWriter, p *imapserver.QResyncParams) error {
	m := s.sel
	if m == nil || p.UIDValidity != m.uidValidity {
		return nil
	}
	gone, err := s.srv.store.ExpungedSince(context.Background(), m.t.ref, p.ModSeq)
	if err != nil {
		return err
	}
	var vanished imap.UIDSet
	for _, uid := range gone {
		if p.KnownUIDs == nil || p.KnownUIDs.Contains(imap.UID(uid)) {
			vanished.AddNum(imap.UID(uid))
		}
	}
	if err := w.WriteVanished(vanished); err != nil {
		return err
	}
	// Messages added since are new to the client: the SELECT's EXISTS
	// tells it of them and it fetches them as such.
	for i, uid := range m.uids {
		if info := m.info[uid]; info.ModSeq <= p.ModSeq || info.Added > p.ModSeq {
			continue
		}
		if err := s.announceKeywords(w, m.flags[uid]); err != nil {
			return err
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(uid))
		rw.WriteFlags(s.flagList(uid))
		rw.WriteModSeq(m.info[uid].ModSeq)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// vanishedSince writes UID FETCH (CHANGEDSINCE n VANISHED)'s VANISHED
// (EARLIER): the UIDs of set expunged since n.
func (s *session) vanishedSince(w *imapserver.FetchWriter, set imap.NumSet, since uint64) error {
	m := s.sel
	uids, ok := set.(imap.UIDSet)
	if !ok {
		return nil
	}
	gone, err := s.srv.store.ExpungedSince(context.Background(), m.t.ref, since)
	if err != nil {
		return err
	}
	// "*" is the highest UID the mailbox ever had, expunged ones included.
	last := m.uidNext - 1
	uids = staticUID(uids, last)
	var out imap.UIDSet
	for _, uid := range gone {
		if uids.Contains(imap.UID(uid)) {
			out.AddNum(imap.UID(uid))
		}
	}
	return w.WriteVanished(out)
}

// writeExpunged tells the client that the messages of uids (sorted) are
// gone and drops them from the view: VANISHED for a QRESYNC client,
// EXPUNGE by sequence number (highest first) otherwise.
func (s *session) writeExpunged(uids []uint32, expunge func(seq uint32) error, vanish func(imap.UIDSet) error) error {
	m := s.sel
	if len(uids) == 0 {
		return nil
	}
	if err := s.searchesLose(uids); err != nil {
		return err
	}
	if s.qresync() {
		var set imap.UIDSet
		for _, uid := range uids {
			if m.seqOf(uid) != 0 {
				set.AddNum(imap.UID(uid))
			}
		}
		if err := vanish(set); err != nil {
			return err
		}
		for _, uid := range uids {
			if seq := m.seqOf(uid); seq != 0 {
				m.forget(int(seq - 1))
			}
		}
		return nil
	}
	for j := len(uids) - 1; j >= 0; j-- {
		seq := m.seqOf(uids[j])
		if seq == 0 {
			continue
		}
		if err := expunge(seq); err != nil {
			return err
		}
		m.forget(int(seq - 1))
	}
	return nil
}

// searchModSeq is ESEARCH's / SEARCH's MODSEQ for a search that used the
// MODSEQ key (RFC 7162 3.1.5, RFC 4731 3.2): the highest modseq of the
// messages returned — of the MIN and MAX messages when only those are
// returned.
func searchModSeq(m *selected, matched []uint32, options *imap.SearchOptions) uint64 {
	if len(matched) == 0 {
		return 0
	}
	pick := matched
	if options != nil && !options.ReturnAll && !options.ReturnCount && (options.ReturnMin || options.ReturnMax) {
		pick = nil
		if options.ReturnMin {
			pick = append(pick, slices.Min(matched))
		}
		if options.ReturnMax {
			pick = append(pick, slices.Max(matched))
		}
	}
	var n uint64
	for _, uid := range pick {
		n = max(n, m.info[uid].ModSeq)
	}
	return n
}

// updateModSeqs records the flags and modseqs a store change returned in
// the view, so that the next Poll does not report them again.
func (m *selected) updateModSeqs(res store.FlagsResult) {
	for uid, f := range res.Flags {
		if _, ok := m.info[uid]; !ok {
			continue
		}
		m.flags[uid] = f
		info := m.info[uid]
		info.Flags, info.ModSeq = f, res.ModSeq[uid]
		m.info[uid] = info
	}
}

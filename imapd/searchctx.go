package imapd

// CONTEXT=SEARCH's UPDATE (RFC 5267): a SEARCH RETURN (UPDATE) stays live
// while the mailbox is selected; whenever the session tells the client of
// changes (sync, its own EXPUNGE), the search is evaluated again over the
// view and the client gets ESEARCH REMOVEFROM / ADDTO for what left and
// entered the result: REMOVEFROM of an expunged message before its
// EXPUNGE (its number is still valid), ADDTO of a new one after its
// EXISTS.

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
)

var _ imapserver.SessionSearchContext = (*session)(nil)

// searchWatch is one live search.
type searchWatch struct {
	tag      string
	kind     imapserver.NumKind
	criteria *imap.SearchCriteria
	uids     []uint32 // the result the client has, ascending
}

// WatchSearch keeps the SEARCH just answered (its result is m.lastMatch)
// up to date.
func (s *session) WatchSearch(tag string, kind imapserver.NumKind, criteria *imap.SearchCriteria) error {
	if s.rsel != nil {
		return errNo(imap.ResponseCodeCannot, "Searches of a folder read from another server are not kept up to date")
	}
	m := s.sel
	m.watches = append(m.watches, &searchWatch{tag: tag, kind: kind, criteria: criteria, uids: slices.Clone(m.lastMatch)})
	return nil
}

// CancelSearch is CANCELUPDATE.
func (s *session) CancelSearch(tags []string) error {
	if s.sel == nil {
		return nil
	}
	s.sel.watches = slices.DeleteFunc(s.sel.watches, func(w *searchWatch) bool { return slices.Contains(tags, w.tag) })
	return nil
}

// numsOf renders uids as the watch's numbers: UIDs, or the view's
// sequence numbers.
func (m *selected) numsOf(w *searchWatch, uids []uint32) imap.NumSet {
	if w.kind == imapserver.NumKindUID {
		var set imap.UIDSet
		for _, uid := range uids {
			set.AddNum(imap.UID(uid))
		}
		return set
	}
	var set imap.SeqSet
	for _, uid := range uids {
		if seq := m.seqOf(uid); seq != 0 {
			set.AddNum(seq)
		}
	}
	return set
}

// searchesLose sends REMOVEFROM for the watched results' messages among
// gone (about to be expunged), before their EXPUNGE.
func (s *session) searchesLose(gone []uint32) error {
	m := s.sel
	for _, w := range m.watches {
		var lost []uint32
		w.uids = slices.DeleteFunc(w.uids, func(uid uint32) bool {
			if _, found := slices.BinarySearch(gone, uid); found {
				lost = append(lost, uid)
				return true
			}
			return false
		})
		if err := s.conn.WriteSearchUpdate(w.tag, w.kind, false, m.numsOf(w, lost)); err != nil {
			return err
		}
	}
	return nil
}

// refreshSearches evaluates every watched search over the view and sends
// what left its result, then what entered it.
func (s *session) refreshSearches() error {
	m := s.sel
	for _, w := range m.watches {
		var now []uint32
		for i, uid := range m.uids {
			if m.ghosts[uid] {
				continue
			}
			c := &candidate{s: s, seq: uint32(i + 1), uid: uid}
			if c.match(w.criteria) {
				now = append(now, uid)
			}
		}
		var left, entered []uint32
		for _, uid := range w.uids {
			if _, ok := slices.BinarySearch(now, uid); !ok {
				left = append(left, uid)
			}
		}
		for _, uid := range now {
			if _, ok := slices.BinarySearch(w.uids, uid); !ok {
				entered = append(entered, uid)
			}
		}
		w.uids = now
		if err := s.conn.WriteSearchUpdate(w.tag, w.kind, false, m.numsOf(w, left)); err != nil {
			return err
		}
		if err := s.conn.WriteSearchUpdate(w.tag, w.kind, true, m.numsOf(w, entered)); err != nil {
			return err
		}
	}
	return nil
}

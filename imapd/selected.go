package imapd

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/internal/imapsort"
	"pfrouter/store"
)

// selected is the session's view of its selected mailbox. The client's
// sequence numbers index uids; the view changes only when the client is
// told (EXISTS, EXPUNGE), so a message expunged by another session stays
// in the view as a ghost until an EXPUNGE response may be sent.
type selected struct {
	t        *target
	readOnly bool

	uids   []uint32            // seq i+1 -> uids[i]
	flags  map[uint32][]string // flags last reported to the client
	info   map[uint32]store.MessageInfo
	ghosts map[uint32]bool // expunged in the store, not yet announced
	recent map[uint32]bool // \Recent for this session
	// keywords announced to the client in FLAGS and PERMANENTFLAGS; a
	// keyword is announced before any FETCH shows it (RFC 3501 7.2.6).
	keywords map[string]bool

	uidValidity uint32
	uidNext     uint32
	// highestModSeq is HIGHESTMODSEQ as of the last full read (SELECT,
	// sync): every change up to it has been reported (modseq.go).
	highestModSeq uint64
	searchRes     imap.UIDSet
	// lastMatch is the last SEARCH's result (UIDs, ascending); watches
	// are the searches kept up to date (CONTEXT=SEARCH, searchctx.go).
	lastMatch []uint32
	watches   []*searchWatch
	// sortKeys caches what SORT and THREAD read of a message's header
	// (sort.go), filled on first use.
	sortKeys map[uint32]*imapsort.Message

	events <-chan store.Event
	cancel func()
}

func (m *selected) seqOf(uid uint32) uint32 {
	i, ok := slices.BinarySearch(m.uids, uid)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	s.unselectRemote()
	t, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	if t.remote {
		if s.qresync() {
			return nil, errNo(imap.ResponseCodeCannot, "Public folder "+t.name+" is read from another server and cannot be opened with QRESYNC enabled")
		}
		return s.selectRemote(t, options)
	}
	if t.noSelect {
		return nil, errNo(imap.ResponseCodeCannot, "Mailbox cannot be selected: "+t.name)
	}
	if !t.canRead() {
		// Contributors may post but not read (SPEC A8).
		return nil, errNoPerm("No permission to read " + t.name)
	}
	ctx := context.Background()
	if t.public {
		// A replica holds no mailbox until its first post arrives.
		if err := s.srv.store.EnsureMailbox(ctx, t.ref, ""); err != nil {
			return nil, err
		}
	}
	events, cancel, err := s.srv.store.Subscribe(t.ref)
	if err != nil {
		return nil, storeErr(err, t.name)
	}
	readOnly := options != nil && options.ReadOnly
	m := &selected{t: t, readOnly: readOnly, flags: map[uint32][]string{}, info: map[uint32]store.MessageInfo{},
		ghosts: map[uint32]bool{}, recent: map[uint32]bool{}, keywords: map[string]bool{}, events: events, cancel: cancel}
	st, msgs, err := s.srv.store.Snapshot(ctx, t.ref, s.user)
	if err != nil {
		cancel()
		return nil, storeErr(err, t.name)
	}
	m.uidValidity, m.uidNext, m.highestModSeq = st.UIDValidity, st.UIDNext, st.HighestModSeq
	for _, msg := range msgs {
		m.uids = append(m.uids, msg.UID)
		m.flags[msg.UID] = msg.Flags
		m.info[msg.UID] = msg
		m.learnKeywords(msg.Flags)
	}
	if err := s.claimRecent(ctx, m); err != nil {
		cancel()
		return nil, err
	}
	s.sel = m

	data := &imap.SelectData{
		Flags:       m.mailboxFlags(),
		NumMessages: uint32(len(m.uids)),
		NumRecent:   uint32(len(m.recent)),
		UIDNext:     imap.UID(st.UIDNext),
		UIDValidity: st.UIDValidity,

		HighestModSeq: st.HighestModSeq,
	}
	if !readOnly {
		data.PermanentFlags = append(slices.Clone(data.Flags), imap.FlagWildcard)
	}
	for i, uid := range m.uids {
		if !store.HasFlag(m.flags[uid], string(imap.FlagSeen)) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

// claimRecent gives this session the \Recent flag of messages no session
// of the user saw yet; EXAMINE looks without claiming.
func (s *session) claimRecent(ctx context.Context, m *selected) error {
	var from uint32
	if m.readOnly {
		w, err := s.srv.store.RecentWatermark(ctx, m.t.ref, s.user)
		if err != nil {
			return err
		}
		from = w
	} else {
		f, _, err := s.srv.store.ClaimRecent(ctx, m.t.ref, s.user)
		if err != nil {
			return err
		}
		from = f
	}
	for _, uid := range m.uids {
		if uid > from {
			m.recent[uid] = true
		}
	}
	return nil
}

func (s *session) Unselect() error {
	s.unselect()
	s.unselectRemote()
	return nil
}

func (s *session) unselect() {
	if s.sel != nil {
		s.sel.cancel()
		s.sel = nil
	}
}

// Poll reports changes made by others since the client last heard:
// EXPUNGE (when allowed) first, then EXISTS (and RECENT), then FETCH FLAGS.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.rsel != nil {
		return s.remotePoll(w, allowExpunge)
	}
	if s.sel == nil {
		return nil
	}
	changed := drain(s.sel.events)
	// Every change made through the store is followed by a pending event
	// (store.Event), so without one the view is current and the O(mailbox)
	// re-read is skipped; ghosts still wait for a command that allows their
	// EXPUNGE.
	if !changed && !(allowExpunge && len(s.sel.ghosts) > 0) {
		return nil
	}
	return s.sync(w, allowExpunge)
}

// drain empties the event channel and reports whether it held any event
// (or was closed: the store is going away, and sync will say so).
func drain(ch <-chan store.Event) bool {
	got := false
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return true
			}
			got = true
		default:
			return got
		}
	}
}

func (s *session) sync(w *imapserver.UpdateWriter, allowExpunge bool) error {
	m := s.sel
	ctx := context.Background()
	st, msgs, err := s.srv.store.Snapshot(ctx, m.t.ref, s.user)
	if errors.Is(err, store.ErrNoMailbox) {
		// Deleted or renamed away by another session: every message is
		// gone from this view.
		msgs, err = nil, nil
		st.UIDNext = m.uidNext
	}
	if err != nil {
		return err
	}
	current := make(map[uint32]store.MessageInfo, len(msgs))
	for _, msg := range msgs {
		current[msg.UID] = msg
	}
	// Expunges: EXPUNGE highest sequence number first so that each number
	// is valid when the client reads it, or VANISHED (writeExpunged).
	var gone []uint32
	for _, uid := range m.uids {
		if _, ok := current[uid]; ok {
			continue
		}
		if !allowExpunge {
			m.ghosts[uid] = true
			continue
		}
		gone = append(gone, uid)
	}
	if err := s.writeExpunged(gone, w.WriteExpunge, w.WriteVanished); err != nil {
		return err
	}
	// New messages: UIDs only grow, so they follow the last one known.
	var last uint32
	if n := len(m.uids); n > 0 {
		last = m.uids[n-1]
	}
	added := false
	for _, msg := range msgs {
		if msg.UID > last {
			m.uids = append(m.uids, msg.UID)
			m.flags[msg.UID] = msg.Flags
			m.info[msg.UID] = msg
			added = true
		}
	}
	if st.UIDNext > m.uidNext {
		m.uidNext = st.UIDNext
	}
	if added {
		before := len(m.recent)
		if err := s.claimRecent(ctx, m); err != nil {
			return err
		}
		if err := w.WriteNumMessages(uint32(len(m.uids))); err != nil {
			return err
		}
		if len(m.recent) != before {
			if err := w.WriteNumRecent(uint32(len(m.recent))); err != nil {
				return err
			}
		}
	}
	// Keywords new to this session, then flag changes made by other
	// sessions.
	for _, msg := range msgs {
		if err := s.announceKeywords(w, msg.Flags); err != nil {
			return err
		}
	}
	condStore := s.condStore()
	for i, uid := range m.uids {
		msg, ok := current[uid]
		if !ok || slices.Equal(msg.Flags, m.flags[uid]) && (!condStore || msg.ModSeq == m.info[uid].ModSeq) {
			continue
		}
		m.flags[uid] = msg.Flags
		m.info[uid] = msg
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(uid))
		rw.WriteFlags(s.flagList(uid))
		if condStore {
			rw.WriteModSeq(msg.ModSeq)
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if len(m.ghosts) == 0 {
		// Every change is reported (a ghost's expunge is still pending).
		m.highestModSeq = max(m.highestModSeq, st.HighestModSeq)
	}
	return s.refreshSearches()
}

// systemFlags are the flags every mailbox has.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// learnKeywords adds flags' keywords to the announced set; it reports
// whether any was new.
func (m *selected) learnKeywords(flags []string) bool {
	added := false
	for _, f := range flags {
		if !strings.HasPrefix(f, "\\") && !m.keywords[f] {
			m.keywords[f] = true
			added = true
		}
	}
	return added
}

// mailboxFlags is FLAGS: the system flags and the announced keywords.
func (m *selected) mailboxFlags() []imap.Flag {
	out := slices.Clone(systemFlags)
	kw := make([]string, 0, len(m.keywords))
	for k := range m.keywords {
		kw = append(kw, k)
	}
	slices.Sort(kw)
	for _, k := range kw {
		out = append(out, imap.Flag(k))
	}
	return out
}

// announceKeywords sends FLAGS and PERMANENTFLAGS when flags hold a
// keyword the client has not been told of, before a FETCH shows it.
func (s *session) announceKeywords(w imapserver.MailboxFlagsWriter, flags []string) error {
	m := s.sel
	if !m.learnKeywords(flags) {
		return nil
	}
	all := m.mailboxFlags()
	if err := w.WriteMailboxFlags(all); err != nil {
		return err
	}
	if m.readOnly {
		return nil
	}
	return w.WritePermanentFlags(append(all, imap.FlagWildcard))
}

// forget drops the message at index i from the view.
func (m *selected) forget(i int) {
	uid := m.uids[i]
	m.uids = slices.Delete(m.uids, i, i+1)
	delete(m.flags, uid)
	delete(m.info, uid)
	delete(m.ghosts, uid)
	delete(m.recent, uid)
	delete(m.sortKeys, uid)
}

// flagList is what FETCH FLAGS says for a message: its flags plus \Recent
// for IMAP4rev1 clients.
func (s *session) flagList(uid uint32) []imap.Flag {
	m := s.sel
	out := make([]imap.Flag, 0, len(m.flags[uid])+1)
	for _, f := range m.flags[uid] {
		out = append(out, imap.Flag(f))
	}
	if m.recent[uid] && !s.rev2() {
		out = append(out, imap.Flag(`\Recent`))
	}
	return out
}

// idleFallback re-reads the mailbox now and then even without a wake-up,
// a safety net for changes the notifier cannot see.
const idleFallback = 30 * time.Second

// Idle pushes changes as they happen: the store's notifier wakes it within
// milliseconds of a delivery (SPEC A9).
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.rsel != nil {
		return s.remoteIdle(w, stop)
	}
	if s.sel == nil {
		<-stop
		return nil
	}
	if err := s.Poll(w, true); err != nil {
		return err
	}
	tick := time.NewTicker(idleFallback)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case _, ok := <-s.sel.events:
			if !ok {
				<-stop
				return nil
			}
		case <-tick.C: // the safety net re-reads even without an event
		}
		// An event was taken from the channel already: sync, not Poll.
		drain(s.sel.events)
		if err := s.sync(w, true); err != nil {
			return err
		}
	}
}

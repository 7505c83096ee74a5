package imapd

import (
	"context"
	"slices"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// postClass is the message class of items put in public folders (R16).
const postClass = "IPM.Post"

// insertable resolves the destination of APPEND, COPY and MOVE.
func (s *session) insertable(name string) (*target, error) {
	t, err := s.resolve(name)
	if err != nil {
		// TRYCREATE only where the client could create it.
		if name == publicRoot || len(name) > len(publicPrefix) && name[:len(publicPrefix)] == publicPrefix {
			return nil, err
		}
		return nil, errNo(imap.ResponseCodeTryCreate, "No such mailbox: "+name)
	}
	if t.noSelect {
		return nil, errNo(imap.ResponseCodeCannot, "Mailbox cannot hold messages: "+t.name)
	}
	if !t.canInsert() {
		return nil, errNoPerm("No permission to post to " + t.name)
	}
	if t.remote {
		return t, nil
	}
	ctx := context.Background()
	if t.public {
		if err := s.srv.store.EnsureMailbox(ctx, t.ref, ""); err != nil {
			return nil, err
		}
	} else if !s.srv.store.MailboxExists(ctx, t.ref) {
		return nil, errNo(imap.ResponseCodeTryCreate, "No such mailbox: "+t.name)
	}
	return t, nil
}

// MailboxAppendLimit is the APPEND size limit for mailbox, told to the
// client as NO [TOOBIG] before it sends the literal: the configured
// maximum, or a public folder's smaller max_message_size.
func (s *session) MailboxAppendLimit(mailbox string) int64 {
	limit := s.srv.maxAppend
	if t, err := s.resolve(mailbox); err == nil && t.folder != nil && t.folder.MaxMessageSize > 0 {
		limit = min(limit, t.folder.MaxMessageSize)
	}
	return limit
}

// liveUIDs returns the UIDs of the picked messages that still exist.
func (m *selected) liveUIDs(idx []int) []uint32 {
	out := make([]uint32, 0, len(idx))
	for _, i := range idx {
		if uid := m.uids[i]; !m.ghosts[uid] {
			out = append(out, uid)
		}
	}
	return out
}

// copyTo copies between folders of this server's store.
func (s *session) copyTo(numSet imap.NumSet, t *target) (*imap.CopyData, []uint32, error) {
	m := s.sel
	uids := m.liveUIDs(m.pick(numSet))
	res, err := s.srv.store.Copy(context.Background(), m.t.ref, t.ref, s.user, uids)
	if err != nil {
		return nil, nil, storeErr(err, t.name)
	}
	data := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.Source {
		data.SourceUIDs.AddNum(imap.UID(res.Source[i]))
		data.DestUIDs.AddNum(imap.UID(res.Dest[i]))
	}
	return data, res.Source, nil
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	t, err := s.insertable(dest)
	if err != nil {
		return nil, err
	}
	if s.crossServer(t) {
		data, _, err := s.copyAcross(numSet, t)
		return data, err
	}
	data, _, err := s.copyTo(numSet, t)
	return data, err
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	src, readOnly := s.rsel.selectedTarget(s.sel)
	if readOnly {
		return errNo(imap.ResponseCodeCannot, "Mailbox is read-only")
	}
	if !src.canDelete() {
		return errNoPerm("No permission to remove items from " + src.name)
	}
	t, err := s.insertable(dest)
	if err != nil {
		return err
	}
	if s.crossServer(t) {
		return s.moveAcross(w, numSet, t)
	}
	m := s.sel
	data, copied, err := s.copyTo(numSet, t)
	if err != nil {
		return err
	}
	removed, err := s.srv.store.Expunge(context.Background(), m.t.ref, copied)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	return s.announceExpunged(removed, w.WriteExpunge, w.WriteVanished)
}

// announceExpunged removes UIDs from the view and tells the client
// (writeExpunged: EXPUNGE, or VANISHED for a QRESYNC client).
func (s *session) announceExpunged(uids []uint32, expunge func(seq uint32) error, vanish func(imap.UIDSet) error) error {
	slices.Sort(uids)
	return s.writeExpunged(uids, expunge, vanish)
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.rsel != nil {
		return s.remoteExpunge(w, uids)
	}
	m := s.sel
	// CLOSE also lands here and must succeed, so a read-only mailbox, or a
	// public folder the user may not delete from, expunges nothing.
	if m.readOnly || !m.t.canDelete() {
		return nil
	}
	var doomed []uint32
	for _, uid := range m.uids {
		if m.ghosts[uid] || !store.HasFlag(m.flags[uid], string(imap.FlagDeleted)) {
			continue
		}
		if uids != nil && !uids.Contains(imap.UID(uid)) {
			continue
		}
		doomed = append(doomed, uid)
	}
	if len(doomed) == 0 {
		return nil
	}
	removed, err := s.srv.store.Expunge(context.Background(), m.t.ref, doomed)
	if err != nil {
		return err
	}
	return s.announceExpunged(removed, w.WriteExpunge, w.WriteVanished)
}

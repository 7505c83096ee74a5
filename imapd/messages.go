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

func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	t, err := s.insertable(mailbox)
	if err != nil {
		return nil, err
	}
	body, err := readLiteral(r)
	if err != nil {
		return nil, err
	}
	opts := store.AppendOptions{Date: options.Time, Viewer: s.user}
	for _, f := range options.Flags {
		opts.Flags = append(opts.Flags, string(f))
	}
	if t.public {
		opts.Class = postClass
	}
	uid, uidValidity, err := s.srv.store.Append(context.Background(), t.ref, body, opts)
	if err != nil {
		return nil, storeErr(err, t.name)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: uidValidity}, nil
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

func (s *session) copyTo(numSet imap.NumSet, dest string) (*imap.CopyData, []uint32, error) {
	m := s.sel
	t, err := s.insertable(dest)
	if err != nil {
		return nil, nil, err
	}
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
	data, _, err := s.copyTo(numSet, dest)
	return data, err
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	m := s.sel
	if m.readOnly {
		return errNo(imap.ResponseCodeCannot, "Mailbox is read-only")
	}
	if !m.t.canDelete() {
		return errNoPerm("No permission to remove items from " + m.t.name)
	}
	data, copied, err := s.copyTo(numSet, dest)
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
	return s.announceExpunged(removed, w.WriteExpunge)
}

// announceExpunged removes UIDs from the view, telling the client highest
// sequence number first.
func (s *session) announceExpunged(uids []uint32, write func(seq uint32) error) error {
	m := s.sel
	slices.Sort(uids)
	for j := len(uids) - 1; j >= 0; j-- {
		seq := m.seqOf(uids[j])
		if seq == 0 {
			continue
		}
		if err := write(seq); err != nil {
			return err
		}
		m.forget(int(seq - 1))
	}
	return nil
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
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
	return s.announceExpunged(removed, w.WriteExpunge)
}

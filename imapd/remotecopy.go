package imapd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/internal/imapserver"
	"pfrouter/referral"
	"pfrouter/store"
)

// COPY and MOVE between a referred folder and a folder of another server
// (issue 13): no server holds both, so the session copies itself, one
// message at a time — read from the source (the replica server's session
// or this server's store), APPEND to the destination (this server's store,
// or the destination's replica server over a pooled referral connection)
// — and, for MOVE, expunges the source only once every APPEND succeeded.
// Rights (R17) are checked here from the directory, as for local folders,
// and again by each replica server on its own end.

// copied is one message as read from the source of a cross-server copy.
type copied struct {
	uid   imap.UID
	body  []byte
	flags []string
	date  time.Time
}

// copySource lists the source messages (UIDs in order) and reads them one
// at a time.
type copySource struct {
	uids []imap.UID
	read func(uid imap.UID) (copied, bool, error) // false: expunged meanwhile
}

// remoteCopySource reads from the selected referred folder.
func (s *session) remoteCopySource(numSet imap.NumSet) (*copySource, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	r := s.rsel
	var uids []imap.UID
	err := s.do(func(c *imapclient.Client) error {
		uids = nil
		msgs, err := c.Fetch(r.staticSet(numSet), &imap.FetchOptions{UID: true}).Collect()
		for _, m := range msgs {
			if m.SeqNum <= r.n && m.UID != 0 {
				uids = append(uids, m.UID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(uids)
	read := func(uid imap.UID) (copied, bool, error) {
		var out copied
		found := false
		err := s.do(func(c *imapclient.Client) error {
			sec := &imap.FetchItemBodySection{Peek: true}
			msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
			for _, m := range msgs {
				if m.UID != uid {
					continue
				}
				found = true
				out = copied{uid: uid, body: m.FindBodySection(sec), date: m.InternalDate}
				for _, f := range m.Flags {
					out.flags = append(out.flags, string(f))
				}
			}
			return err
		})
		return out, found, err
	}
	return &copySource{uids: uids, read: read}, nil
}

// localCopySource reads from the selected local folder.
func (s *session) localCopySource(numSet imap.NumSet) *copySource {
	m := s.sel
	var uids []imap.UID
	for _, uid := range m.liveUIDs(m.pick(numSet)) {
		uids = append(uids, imap.UID(uid))
	}
	read := func(uid imap.UID) (copied, bool, error) {
		info, ok := m.info[uint32(uid)]
		if !ok {
			return copied{}, false, nil
		}
		out := copied{uid: uid, flags: m.flags[uint32(uid)], date: info.Date}
		found := false
		err := s.srv.store.BodiesOf(context.Background(), []store.MessageInfo{info}, func(_ uint32, body []byte, ok bool) error {
			out.body, found = body, ok
			return nil
		})
		return out, found, err
	}
	return &copySource{uids: uids, read: read}
}

// appendFlags are the flags a copy keeps: not \Recent (the destination
// sets it) nor \Deleted (a moved message is not born deleted).
func appendFlags(flags []string) []imap.Flag {
	var out []imap.Flag
	for _, f := range flags {
		if f != `\Recent` && f != string(imap.FlagDeleted) {
			out = append(out, imap.Flag(f))
		}
	}
	return out
}

// crossCopy copies the source's messages into dest, a folder on another
// server than the source's. It returns the COPYUID data (nil if the
// destination gave no UIDs) and the source UIDs copied. On failure the
// copies already made in a local destination are removed again (RFC 3501
// 6.4.7: a failed COPY leaves the destination as it was); in a referred
// destination they are removed when the user may delete there, else
// logged.
func (s *session) crossCopy(src *copySource, dest *target) (*imap.CopyData, []imap.UID, error) {
	data := &imap.CopyData{}
	var done []imap.UID
	each := func(put func(m copied) (imap.UID, uint32, error)) error {
		for _, uid := range src.uids {
			m, ok, err := src.read(uid)
			if err != nil {
				return err
			}
			if !ok {
				continue // expunged meanwhile: as a local COPY skips it
			}
			duid, uv, err := put(m)
			if err != nil {
				return err
			}
			done = append(done, uid)
			if duid != 0 {
				data.SourceUIDs.AddNum(uid)
				data.DestUIDs.AddNum(duid)
				data.UIDValidity = uv
			}
		}
		return nil
	}
	var err error
	if dest.remote {
		err = s.copyToRemote(dest, data, each)
	} else {
		err = s.copyToLocal(dest, data, each)
	}
	if err != nil {
		return nil, nil, err
	}
	if data.UIDValidity == 0 || len(data.DestUIDs) != len(done) {
		return nil, done, nil // no COPYUID: not every copy got a UID
	}
	return data, done, nil
}

func (s *session) copyToLocal(dest *target, data *imap.CopyData, each func(put func(copied) (imap.UID, uint32, error)) error) error {
	ctx := context.Background()
	var made []uint32
	err := each(func(m copied) (imap.UID, uint32, error) {
		opts := store.AppendOptions{Date: m.date, Viewer: s.user}
		for _, f := range appendFlags(m.flags) {
			opts.Flags = append(opts.Flags, string(f))
		}
		if dest.public {
			opts.Class = postClass
		}
		uid, uv, err := s.srv.store.Append(ctx, dest.ref, m.body, opts)
		if err != nil {
			return 0, 0, storeErr(err, dest.name)
		}
		made = append(made, uid)
		return imap.UID(uid), uv, nil
	})
	if err != nil && len(made) > 0 {
		if _, rerr := s.srv.store.Expunge(ctx, dest.ref, made); rerr != nil {
			s.srv.log.Warn("COPY failed and its partial copies could not be removed", "user", s.user, "mailbox", dest.name, "err", rerr)
		}
	}
	return err
}

func (s *session) copyToRemote(dest *target, data *imap.CopyData, each func(put func(copied) (imap.UID, uint32, error)) error) error {
	return s.withConn(dest, func(c *imapclient.Client, storeName string) error {
		var made imap.UIDSet
		err := each(func(m copied) (imap.UID, uint32, error) {
			cmd := c.Append(dest.name, int64(len(m.body)), &imap.AppendOptions{Flags: appendFlags(m.flags), Time: m.date})
			if _, err := cmd.Write(m.body); err != nil {
				cmd.Close()
				return 0, 0, err
			}
			if err := cmd.Close(); err != nil {
				return 0, 0, err
			}
			ad, err := cmd.Wait()
			if err != nil {
				return 0, 0, err
			}
			if ad.UID == 0 {
				return 0, 0, nil
			}
			made.AddNum(ad.UID)
			return ad.UID, referral.UIDValidity(storeName, ad.UIDValidity), nil
		})
		if err != nil && len(made) > 0 && !isRemoteIOError(err) {
			s.undoRemoteCopy(c, dest, made)
		}
		return err
	})
}

// undoRemoteCopy removes the copies a failed COPY made in a referred
// folder, where the user may delete (R17); elsewhere they stay, logged.
func (s *session) undoRemoteCopy(c *imapclient.Client, dest *target, made imap.UIDSet) {
	err := errNoPerm("no right to delete in " + dest.name)
	if dest.canDelete() {
		err = func() error {
			if _, err := c.Select(dest.name, nil).Wait(); err != nil {
				return err
			}
			defer c.Unselect().Wait()
			if err := c.Store(made, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			return c.UIDExpunge(made).Close()
		}()
	}
	if err != nil {
		s.srv.log.Warn("COPY failed and its partial copies stay in the destination", "user", s.user, "mailbox", dest.name, "uids", made.String(), "err", err)
	}
}

// selectedTarget is the selected folder and whether it is read-only: the
// referred one (r) or the local one (m).
func (r *remoteSel) selectedTarget(m *selected) (*target, bool) {
	if r != nil {
		return r.t, r.readOnly
	}
	return m.t, m.readOnly
}

// crossServer says whether COPY/MOVE from the selected folder to dest
// crosses servers: the source or the destination is referred.
func (s *session) crossServer(dest *target) bool { return s.rsel != nil || dest.remote }

// copyAcross is COPY between servers.
func (s *session) copyAcross(numSet imap.NumSet, dest *target) (*imap.CopyData, []imap.UID, error) {
	var src *copySource
	if s.rsel != nil {
		var err error
		if src, err = s.remoteCopySource(numSet); err != nil {
			return nil, nil, err
		}
	} else {
		src = s.localCopySource(numSet)
	}
	return s.crossCopy(src, dest)
}

// moveAcross is MOVE between servers: the copy, then the source's expunge.
func (s *session) moveAcross(w *imapserver.MoveWriter, numSet imap.NumSet, dest *target) error {
	data, done, err := s.copyAcross(numSet, dest)
	if err != nil {
		return err
	}
	if data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
	}
	if len(done) == 0 {
		return nil
	}
	if s.rsel == nil {
		uids := make([]uint32, len(done))
		for i, u := range done {
			uids[i] = uint32(u)
		}
		removed, err := s.srv.store.Expunge(context.Background(), s.sel.t.ref, uids)
		if err != nil {
			return err
		}
		return s.announceExpunged(removed, w.WriteExpunge, w.WriteVanished)
	}
	// The replica server expunges exactly the copied UIDs (UIDPLUS) and
	// checks the user's right to (R17); its EXPUNGE responses are the
	// client's.
	r := s.rsel
	var set imap.UIDSet
	for _, u := range done {
		set.AddNum(u)
	}
	return s.do(func(c *imapclient.Client) error {
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return fmt.Errorf("MOVE copied the messages but could not remove them from %s: %w", r.t.name, err)
		}
		if err := r.relayExpunges(c.UIDExpunge(set), w.WriteExpunge); err != nil {
			var ie *imap.Error
			if errors.As(err, &ie) {
				return fmt.Errorf("MOVE copied the messages but could not remove them from %s: %w", r.t.name, err)
			}
			return err
		}
		return nil
	})
}

package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"pfrouter/internal/imapserver"

	"pfrouter/directory"
	"pfrouter/referral"
)

// A referred folder (issue 13) is served by forwarding the folder's
// commands to an IMAP session on the replica's server, logged in as the
// user: that server applies the user's rights (R17) and per-user \Seen
// exactly as for a local folder. The client's view of the folder is the
// remote session's view: every EXISTS and EXPUNGE the remote session sends
// is passed on, in order, before the client may rely on it, so sequence
// numbers mean the same on both sides.

type eventKind uint8

const (
	evExists eventKind = iota
	evExpunge
	evFlags
)

// remoteEvent is an unsolicited response of the remote session.
type remoteEvent struct {
	kind  eventKind
	num   uint32 // EXISTS count, or sequence number
	uid   imap.UID
	flags []imap.Flag
}

// remoteSel is the session's selection of a referred folder.
type remoteSel struct {
	t        *target
	readOnly bool
	rc       *remoteConn
	// n is the number of messages the client knows of.
	n uint32
	// store is the replica read from; uidValidity the value the client
	// was shown for it (referral.UIDValidity).
	store       string
	uidValidity uint32
	// failed are servers that could not be reached while selecting (R10).
	failed []string
	// touched: a command reached the remote session since the last Poll,
	// so its updates are already here.
	touched bool

	buf []byte // relayFetch's copy buffer

	mu      sync.Mutex
	pending []remoteEvent
	wake    chan struct{} // signalled on every push, for IDLE
}

// push queues an update for the client; false when too many are queued
// already (remoteMaxPending).
func (r *remoteSel) push(ev remoteEvent) bool {
	r.mu.Lock()
	if len(r.pending) >= remoteMaxPending {
		r.mu.Unlock()
		return false
	}
	r.pending = append(r.pending, ev)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// referable says whether a folder without a local replica can be read by
// referral from this session; reason says why not.
func (s *session) referable(f *directory.Folder) (bool, string) {
	if s.srv.referrals == nil || s.publicOnly {
		// A referral session never refers on: no chains, no loops.
		return false, "no local replica"
	}
	d := s.srv.referrals.Decide(f, nil)
	if d.Outcome == referral.None {
		return false, d.Reason
	}
	return true, ""
}

// selectRemote selects a referred folder on the best replica server,
// trying the next-best when one cannot be reached.
func (s *session) selectRemote(t *target, options *imap.SelectOptions) (*imap.SelectData, error) {
	r := &remoteSel{t: t, readOnly: options != nil && options.ReadOnly, wake: make(chan struct{}, 1)}
	data, err := s.openRemote(r)
	if err != nil {
		return nil, err
	}
	r.n = data.NumMessages
	r.uidValidity = referral.UIDValidity(r.store, data.UIDValidity)
	data.UIDValidity = r.uidValidity
	s.rsel = r
	return data, nil
}

// openRemote connects r to the best replica server not yet failed and
// selects the folder there.
func (s *session) openRemote(r *remoteSel) (*imap.SelectData, error) {
	ctx := context.Background()
	for {
		d := s.srv.referrals.Decide(r.t.folder, r.failed)
		if d.Outcome != referral.Referred {
			s.srv.log.Info("public folder not readable by referral", "user", s.user, "folder", r.t.folder.Path, "reason", d.Reason, "excluded", r.failed)
			return nil, errNo(imap.ResponseCodeUnavailable, "Public folder "+r.t.name+" is not available now; try again later")
		}
		rc, err := s.srv.remotes.get(ctx, d.Server, s.user)
		if err != nil {
			s.srv.log.Warn("referral failed; trying the next replica", "user", s.user, "folder", r.t.folder.Path, "server", d.Server, "err", err)
			r.failed = append(r.failed, d.Server)
			continue
		}
		rc.setSink(r)
		var data *imap.SelectData
		err = rc.run(func(c *imapclient.Client) error {
			var err error
			data, err = c.Select(r.t.name, &imap.SelectOptions{ReadOnly: r.readOnly}).Wait()
			return err
		})
		if err != nil {
			rc.setSink(nil)
			if !isRemoteIOError(err) {
				s.srv.remotes.put(rc)
				return nil, err // the replica server's answer (rights, ...)
			}
			rc.c.Close()
			r.failed = append(r.failed, d.Server)
			continue
		}
		r.mu.Lock()
		r.pending = nil // the SELECT's own EXISTS is in data
		r.mu.Unlock()
		r.rc, r.store = rc, d.Store
		s.srv.log.Debug("public folder referred", "user", s.user, "folder", r.t.folder.Path, "server", d.Server, "rule", d.Rule, "cost", d.Cost)
		return data, nil
	}
}

// unselectRemote gives the connection back to the pool in the
// authenticated state.
func (s *session) unselectRemote() {
	r := s.rsel
	s.rsel = nil
	if r == nil || r.rc == nil {
		return
	}
	r.rc.setSink(nil)
	if err := r.rc.run(func(c *imapclient.Client) error { return c.Unselect().Wait() }); err != nil {
		r.rc.c.Close()
		return
	}
	s.srv.remotes.put(r.rc)
}

// do runs op on the remote session. A broken connection ends the
// session (lost).
func (s *session) do(op func(c *imapclient.Client) error) error {
	r := s.rsel
	r.touched = true
	err := r.rc.run(op)
	if isRemoteIOError(err) {
		return s.lost(err)
	}
	return err
}

// lost ends a session whose selected referred folder's replica server
// failed (broke the connection, stopped answering, flooded the session).
// Another replica numbers its posts differently (other UIDs, other
// UIDVALIDITY), and IMAP has no way to change either inside a selection
// (RFC 3501 2.3.1.1), so the session cannot carry on there: it answers
// "* BYE" and closes. The command that met the failure is not
// acknowledged, so the client knows to repeat it; the client logs in
// again, is referred to the next-best replica (R10, failover for new
// sessions) and sees that replica's UIDVALIDITY when it selects the
// folder. Flags acknowledged earlier are kept by the failed replica and
// replicate from it like any flag change (docs/replication.md).
func (s *session) lost(cause error) error {
	r := s.rsel
	s.rsel = nil
	r.rc.setSink(nil)
	r.rc.c.Close()
	s.srv.log.Warn("referred public folder's server failed; ending the session so the client reselects on another replica",
		"user", s.user, "folder", r.t.folder.Path, "server", r.rc.server, "err", cause)
	if err := s.conn.Bye("Public folder " + r.t.name + " is no longer available from its replica; log in again to read it from another"); err != nil {
		return fmt.Errorf("imapd: referred folder lost (%w); BYE: %w", cause, err)
	}
	return fmt.Errorf("imapd: referred folder's replica server failed: %w", cause)
}

// alive checks the selection's connection before a command.
func (s *session) alive() error {
	if s.rsel.rc.dead() {
		return s.lost(io.ErrUnexpectedEOF)
	}
	return nil
}

// flush writes pending updates in order; without allowExpunge it stops at
// the first EXPUNGE, since later updates count on it.
func (r *remoteSel) flush(w *imapserver.UpdateWriter, allowExpunge bool) error {
	r.mu.Lock()
	evs := r.pending
	r.pending = nil
	r.mu.Unlock()
	for i, ev := range evs {
		var err error
		switch ev.kind {
		case evExpunge:
			if !allowExpunge || ev.num == 0 || ev.num > r.n {
				if !allowExpunge {
					r.requeue(evs[i:])
					return nil
				}
				continue
			}
			err = w.WriteExpunge(ev.num)
			r.n--
		case evExists:
			if ev.num < r.n {
				continue // stale: an EXPUNGE already took it down
			}
			r.n = ev.num
			err = w.WriteNumMessages(ev.num)
		case evFlags:
			if ev.num == 0 || ev.num > r.n {
				continue
			}
			err = w.WriteMessageFlags(ev.num, ev.uid, ev.flags)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *remoteSel) requeue(evs []remoteEvent) {
	r.mu.Lock()
	r.pending = append(slices.Clone(evs), r.pending...)
	r.mu.Unlock()
}

// remotePoll asks the remote session for news (NOOP) unless the command
// just talked to it, then passes the updates on.
func (s *session) remotePoll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	r := s.rsel
	if !r.touched && allowExpunge {
		if err := s.do(func(c *imapclient.Client) error { return c.Noop().Wait() }); err != nil {
			return err
		}
	}
	r.touched = false
	return r.flush(w, allowExpunge)
}

// remoteIdle idles on the remote session and passes its updates on as
// they come; a replica server going away ends the session (lost).
func (s *session) remoteIdle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.remotePoll(w, true); err != nil {
		return err
	}
	r := s.rsel
	idle, err := r.rc.c.Idle()
	if err != nil {
		if isRemoteIOError(err) {
			return s.lost(err)
		}
		return err
	}
	for {
		select {
		case <-stop:
			if err := idle.Close(); err == nil {
				err = idle.Wait()
			}
			if isRemoteIOError(err) {
				return s.lost(err)
			}
			if err != nil {
				return err
			}
			return r.flush(w, true)
		case <-r.wake:
			if err := r.flush(w, true); err != nil {
				idle.Close()
				return err
			}
		case <-r.rc.c.Closed():
			return s.lost(io.ErrUnexpectedEOF)
		}
	}
}

// staticSeqSet replaces "*" by the last message the client knows of: the
// remote session may know more already.
func (r *remoteSel) staticSet(numSet imap.NumSet) imap.NumSet {
	if set, ok := numSet.(imap.SeqSet); ok && !imap.IsSearchRes(numSet) {
		return staticSeq(set, r.n)
	}
	return numSet
}

// remoteFetch forwards FETCH to the replica server and relays its
// responses verbatim (relay.go), or, for the rare request that cannot be
// written on one line, decoded and encoded again.
func (s *session) remoteFetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	items, ok := w.Request(options)
	if !ok {
		return s.relayCommand(w, numSet, options, func(c *imapclient.Client, set imap.NumSet) *imapclient.FetchCommand {
			return c.Fetch(set, options)
		})
	}
	if err := s.alive(); err != nil {
		return err
	}
	r := s.rsel
	if _, seq := numSet.(imap.SeqSet); seq && r.expungeWaiting() {
		// The remote session has expunged a message the client has not
		// been told of (only a UID command or NOOP may tell it): their
		// sequence numbers differ until then (RFC 5530).
		return errNo(imap.ResponseCode("EXPUNGEISSUED"), "Messages were expunged; issue NOOP and try again")
	}
	uncork := s.corkConn()
	defer func() {
		if uerr := uncork(); err == nil {
			err = uerr
		}
	}()
	r.touched = true
	err = s.relayRaw(w, r.staticSet(numSet), items)
	if errors.Is(err, errClientWrite) {
		// The client went away: the replica connection stopped mid-response
		// and cannot be used again; the session ends as the client left.
		r.rc.c.Close()
		return err
	}
	if isRemoteIOError(err) {
		return s.lost(err)
	}
	return err
}

// expungeWaiting says whether an EXPUNGE is queued for the client.
func (r *remoteSel) expungeWaiting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.pending, func(ev remoteEvent) bool { return ev.kind == evExpunge })
}

func (s *session) remoteStore(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	return s.relayCommand(w, numSet, nil, func(c *imapclient.Client, set imap.NumSet) *imapclient.FetchCommand {
		return c.Store(set, flags, options)
	})
}

// relayCommand runs a command answered by FETCH responses (FETCH, STORE)
// on the remote session and relays the responses.
func (s *session) relayCommand(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions,
	send func(c *imapclient.Client, set imap.NumSet) *imapclient.FetchCommand) (err error) {
	if err := s.alive(); err != nil {
		return err
	}
	// Batch the responses into few writes, as the local Fetch does.
	uncork := s.corkConn()
	defer func() {
		if uerr := uncork(); err == nil {
			err = uerr
		}
	}()
	numSet = s.rsel.staticSet(numSet)
	return s.do(func(c *imapclient.Client) error {
		return s.relayFetch(w, send(c, numSet), options)
	})
}

// relayFetch copies FETCH responses from the remote command to the client,
// streaming bodies. Messages the client has not been told of yet (beyond
// r.n) are left out; it learns of them through EXISTS after the command.
func (s *session) relayFetch(w *imapserver.FetchWriter, cmd *imapclient.FetchCommand, options *imap.FetchOptions) error {
	defer cmd.Close()
	n := s.rsel.n
	if s.rsel.buf == nil {
		s.rsel.buf = make([]byte, 16<<10)
	}
	buf := s.rsel.buf // io.Copy would allocate 32 KB per literal
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		if msg.SeqNum == 0 || msg.SeqNum > n {
			continue // Next discards the unread items
		}
		rw := w.CreateMessage(msg.SeqNum)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				rw.WriteUID(it.UID)
			case imapclient.FetchItemDataFlags:
				rw.WriteFlags(it.Flags)
			case imapclient.FetchItemDataRFC822Size:
				rw.WriteRFC822Size(it.Size)
			case imapclient.FetchItemDataInternalDate:
				rw.WriteInternalDate(it.Time)
			case imapclient.FetchItemDataEnvelope:
				rw.WriteEnvelope(it.Envelope)
			case imapclient.FetchItemDataBodyStructure:
				rw.WriteBodyStructure(it.BodyStructure)
			case imapclient.FetchItemDataBinarySectionSize:
				rw.WriteBinarySectionSize(&imap.FetchItemBinarySectionSize{Part: it.Part}, it.Size)
			case imapclient.FetchItemDataBodySection:
				if it.Literal != nil {
					if err := copyLiteral(rw.WriteBodySection(requestedSection(options, &it), it.Literal.Size()), it.Literal, buf); err != nil {
						return err
					}
				}
			case imapclient.FetchItemDataBinarySection:
				if it.Literal != nil {
					if err := copyLiteral(rw.WriteBinarySection(requestedBinary(options, &it), it.Literal.Size()), it.Literal, buf); err != nil {
						return err
					}
				}
			}
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return cmd.Close()
}

func copyLiteral(w io.WriteCloser, r io.Reader, buf []byte) error {
	_, err := io.CopyBuffer(w, r, buf)
	return errors.Join(err, w.Close())
}

// requestedSection maps a returned section to the one the client asked
// for: imapserver names obsolete forms (RFC822, RFC822.TEXT) by the
// request's pointer.
func requestedSection(options *imap.FetchOptions, it *imapclient.FetchItemDataBodySection) *imap.FetchItemBodySection {
	if options != nil {
		for _, sec := range options.BodySection {
			if it.MatchCommand(sec) {
				return sec
			}
		}
	}
	return it.Section
}

func requestedBinary(options *imap.FetchOptions, it *imapclient.FetchItemDataBinarySection) *imap.FetchItemBinarySection {
	if options != nil {
		for _, sec := range options.BinarySection {
			if it.MatchCommand(sec) {
				return sec
			}
		}
	}
	return it.Section
}

func (s *session) remoteSearch(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	n := s.rsel.n
	for i, set := range criteria.SeqNum {
		criteria.SeqNum[i] = staticSeq(set, n)
	}
	var data *imap.SearchData
	err := s.do(func(c *imapclient.Client) error {
		var err error
		if kind == imapserver.NumKindUID {
			data, err = c.UIDSearch(criteria, options).Wait()
		} else {
			data, err = c.Search(criteria, options).Wait()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if set, ok := data.All.(imap.SeqSet); ok && kind == imapserver.NumKindSeq {
		// Leave out messages the client has not been told of yet.
		var keep imap.SeqSet
		nums, _ := set.Nums()
		for _, num := range nums {
			if num <= n {
				keep.AddNum(num)
			}
		}
		data.All = keep
	}
	return data, nil
}

func (s *session) remoteExpunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if err := s.alive(); err != nil {
		return err
	}
	r := s.rsel
	return s.do(func(c *imapclient.Client) error {
		var cmd *imapclient.ExpungeCommand
		if uids != nil {
			cmd = c.UIDExpunge(*uids)
		} else {
			cmd = c.Expunge()
		}
		return r.relayExpunges(cmd, w.WriteExpunge)
	})
}

// relayExpunges passes an expunging command's EXPUNGE responses on to the
// client (those about messages it knows of) and waits for its answer.
func (r *remoteSel) relayExpunges(cmd *imapclient.ExpungeCommand, write func(seq uint32) error) error {
	defer cmd.Close()
	for seq := cmd.Next(); seq != 0; seq = cmd.Next() {
		if seq > r.n {
			continue
		}
		if err := write(seq); err != nil {
			return err
		}
		r.n--
	}
	return cmd.Close()
}

// remoteStatus asks the replica server for a referred folder's status.
func (s *session) remoteStatus(t *target, options *imap.StatusOptions) (*imap.StatusData, error) {
	var data *imap.StatusData
	err := s.withConn(t, func(c *imapclient.Client, store string) error {
		var err error
		if data, err = c.Status(t.name, options).Wait(); err == nil && data.UIDValidity != 0 {
			data.UIDValidity = referral.UIDValidity(store, data.UIDValidity)
		}
		return err
	})
	return data, err
}

// remoteAppend posts to a referred folder on its replica server; that
// server checks the user's right to post (R17), and the post replicates
// from there as any post does.
func (s *session) remoteAppend(t *target, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	body, err := readLiteral(r)
	if err != nil {
		return nil, err
	}
	var data *imap.AppendData
	err = s.withConn(t, func(c *imapclient.Client, store string) error {
		cmd := c.Append(t.name, int64(len(body)), options)
		if _, err := cmd.Write(body); err != nil {
			cmd.Close()
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		if data, err = cmd.Wait(); err == nil && data.UIDValidity != 0 {
			data.UIDValidity = referral.UIDValidity(store, data.UIDValidity)
		}
		return err
	})
	return data, err
}

// withConn runs a one-off command (STATUS, APPEND) for a referred folder
// on a pooled connection to its replica server, trying the next replica
// when one cannot be reached.
func (s *session) withConn(t *target, op func(c *imapclient.Client, store string) error) error {
	var failed []string
	for {
		d := s.srv.referrals.Decide(t.folder, failed)
		if d.Outcome != referral.Referred {
			s.srv.log.Info("public folder not readable by referral", "user", s.user, "folder", t.folder.Path, "reason", d.Reason)
			return errNo(imap.ResponseCodeUnavailable, "Public folder "+t.name+" is not available now; try again later")
		}
		rc, err := s.srv.remotes.get(context.Background(), d.Server, s.user)
		if err == nil {
			err = rc.run(func(c *imapclient.Client) error { return op(c, d.Store) })
			if !isRemoteIOError(err) {
				s.srv.remotes.put(rc)
				return err
			}
			rc.c.Close()
		}
		s.srv.log.Warn("referral failed; trying the next replica", "user", s.user, "folder", t.folder.Path, "server", d.Server, "err", err)
		failed = append(failed, d.Server)
	}
}

// readable says whether LIST shows a public folder selectable: a local
// replica, or one a referral can reach.
func (s *session) readable(snap *directory.Snapshot, f *directory.Folder) bool {
	if s.localReplica(snap, f) != "" {
		return true
	}
	ok, why := s.referable(f)
	if !ok {
		s.srv.log.Debug("public folder listed \\Noselect", "user", s.user, "folder", f.Path, "reason", why)
	}
	return ok
}

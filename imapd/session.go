package imapd

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// session is one IMAP connection's state. imapserver runs one command at
// a time per connection (IDLE's updates run while the reader only waits
// for DONE), so the fields need no lock.
type session struct {
	srv   *Server
	conn  *imapserver.Conn
	check func(user, pass string) error // ServeLogin sessions only

	user         string
	mailboxStore string
	sel          *selected
	// publicOnly: a referral session for a user whose mailbox is on
	// another server; only "Public Folders/" exists (issue 13).
	publicOnly bool
	rsel       *remoteSel // the selected folder when it is referred
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)

// defaultMailboxes are created at a user's first login.
var defaultMailboxes = []store.MailboxInfo{
	{Name: "INBOX"},
	{Name: "Sent", SpecialUse: string(imap.MailboxAttrSent)},
	{Name: "Drafts", SpecialUse: string(imap.MailboxAttrDrafts)},
	{Name: "Trash", SpecialUse: string(imap.MailboxAttrTrash)},
	{Name: "Junk", SpecialUse: string(imap.MailboxAttrJunk)},
}

// startAs binds a handed-over session: the user's own, or (publicOnly) a
// peer server's referral session for a user whose mailbox is elsewhere.
func (s *session) startAs(user string, publicOnly bool) error {
	if !publicOnly {
		return s.start(user)
	}
	if s.srv.dir.Snapshot().User(user) == nil {
		return fmt.Errorf("imapd: unknown user %q", user)
	}
	s.user, s.publicOnly = user, true
	s.srv.log.Debug("imap referral session", "user", user)
	return nil
}

// start binds the session to an authenticated user.
func (s *session) start(user string) error {
	st, err := s.srv.checkUser(user)
	if err != nil {
		return err
	}
	ctx := context.Background()
	created, err := s.srv.store.Provision(ctx, st, user, defaultMailboxes)
	if err != nil {
		return err
	}
	if created {
		// Clients that only show subscribed folders must see these.
		for _, mb := range defaultMailboxes {
			if err := s.srv.store.SetSubscribed(ctx, store.MailboxRef{Store: st, User: user, Name: mb.Name}, true); err != nil {
				return err
			}
		}
	}
	// INBOX always exists, even for a user who renamed it away.
	if err := s.srv.store.EnsureMailbox(ctx, store.MailboxRef{Store: st, User: user, Name: "INBOX"}, ""); err != nil {
		return err
	}
	s.user, s.mailboxStore = user, st
	s.srv.log.Debug("imap session", "user", user)
	return nil
}

func (s *session) Login(username, password string) error {
	if s.check == nil {
		return imapserver.ErrAuthFailed
	}
	if err := s.check(username, password); err != nil {
		return imapserver.ErrAuthFailed
	}
	if err := s.start(username); err != nil {
		s.srv.log.Warn("login refused", "user", username, "err", err)
		return imapserver.ErrAuthFailed
	}
	return nil
}

func (s *session) Close() error {
	s.unselect()
	s.unselectRemote()
	return nil
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}},
		Shared:   []imap.NamespaceDescriptor{{Prefix: publicPrefix, Delim: delim}},
	}, nil
}

// rev2 says whether the client enabled IMAP4rev2, which has no \Recent.
func (s *session) rev2() bool { return s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) }

// storeErr maps store errors to IMAP replies.
func storeErr(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNoMailbox):
		return errNonExistent(name)
	case errors.Is(err, store.ErrMailboxExists):
		return errNo(imap.ResponseCodeAlreadyExists, "Mailbox already exists: "+name)
	case errors.Is(err, store.ErrBadName):
		return errNo(imap.ResponseCodeCannot, "Invalid mailbox name: "+name)
	default:
		return err
	}
}

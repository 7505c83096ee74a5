package store

import (
	"encoding/binary"
	"strings"
)

// MailboxRef names a mailbox: a user's mailbox (User set, Name "INBOX",
// "Sent", "Projects/2024" ...) or a public folder replica (User "", Name the
// folder path such as "/Sales/Announcements").
type MailboxRef struct{ Store, User, Name string }

func (r MailboxRef) String() string {
	if r.User == "" {
		return r.Store + ":" + r.Name
	}
	return r.Store + ":" + r.User + "/" + r.Name
}

// Public reports whether the mailbox is a public folder replica, whose
// flags are kept per user.
func (r MailboxRef) Public() bool { return r.User == "" }

// normalize makes INBOX case-insensitive as IMAP requires.
func (r MailboxRef) normalize() MailboxRef {
	if r.User != "" && strings.EqualFold(r.Name, "INBOX") {
		r.Name = "INBOX"
	}
	return r
}

func (r MailboxRef) valid() bool {
	return r.Store != "" && r.Name != "" && !strings.ContainsRune(r.Store+r.User+r.Name, 0)
}

func nameKey(prefix byte, r MailboxRef) []byte {
	k := make([]byte, 0, 4+len(r.Store)+len(r.User)+len(r.Name))
	k = append(k, prefix, '/')
	k = append(k, r.Store...)
	k = append(k, 0)
	k = append(k, r.User...)
	k = append(k, 0)
	return append(k, r.Name...)
}

// ownerPrefix is the prefix of every name key of one user (or of one
// public store when user is "").
func ownerPrefix(prefix byte, store, user string) []byte {
	return nameKey(prefix, MailboxRef{Store: store, User: user})
}

func idKey(prefix byte, id uint64, extra int) []byte {
	k := make([]byte, 2+8, 2+8+extra)
	k[0], k[1] = prefix, '/'
	binary.BigEndian.PutUint64(k[2:], id)
	return k
}

func boxKey(id uint64) []byte { return idKey('x', id, 0) }

func msgPrefix(id uint64) []byte { return idKey('i', id, 4) }

func msgKey(id uint64, uid uint32) []byte {
	return binary.BigEndian.AppendUint32(msgPrefix(id), uid)
}

func uidOfMsgKey(k []byte) uint32 { return binary.BigEndian.Uint32(k[len(k)-4:]) }

func bodyKey(body uint64, chunk uint32) []byte {
	return binary.BigEndian.AppendUint32(idKey('b', body, 4), chunk)
}

func dedupKey(id uint64, deliveryID string) []byte {
	return append(idKey('d', id, len(deliveryID)), deliveryID...)
}

func viewerPrefix(prefix byte, id uint64, viewer string) []byte {
	k := append(idKey(prefix, id, len(viewer)+5), viewer...)
	return append(k, 0)
}

func privFlagsKey(id uint64, viewer string, uid uint32) []byte {
	return binary.BigEndian.AppendUint32(viewerPrefix('p', id, viewer), uid)
}

func recentKey(id uint64, viewer string) []byte { return viewerPrefix('r', id, viewer) }

package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MailboxInfo describes one mailbox of an owner.
type MailboxInfo struct {
	Name       string
	SpecialUse string // `\Sent`, `\Drafts`, `\Trash`, `\Junk` or ""
	Folder     string // public folder replicas: the folder's identity (TagMailbox), "" if not tagged
}

// Status is a mailbox's counters.
type Status struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    uint32
	Size        int64
	// HighestModSeq is the mailbox's HIGHESTMODSEQ as the viewer of the
	// read sees it (modseq.go).
	HighestModSeq uint64
}

func (s *Store) loadUIDValidityBase() (uint32, error) {
	key := []byte("c/uvbase")
	var base uint32
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err == nil {
			return item.Value(func(b []byte) error {
				if len(b) != 4 {
					return fmt.Errorf("corrupt UIDVALIDITY base record")
				}
				base = binary.BigEndian.Uint32(b)
				return nil
			})
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		// Seeding with the clock keeps UIDVALIDITY values of a rebuilt
		// database from repeating those clients cached from the old one.
		base = uint32(time.Now().Unix())
		return txn.Set(key, binary.BigEndian.AppendUint32(nil, base))
	})
	if err != nil {
		return 0, fmt.Errorf("load UIDVALIDITY base: %w", err)
	}
	return base, nil
}

// lookup finds a mailbox record by name inside txn.
func lookup(txn *badger.Txn, ref MailboxRef) (*mailboxRecord, error) {
	item, err := txn.Get(nameKey('n', ref))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", ref, ErrNoMailbox)
	}
	if err != nil {
		return nil, fmt.Errorf("look up mailbox %s: %w", ref, err)
	}
	var id uint64
	if err := item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("corrupt name record for %s", ref)
		}
		id = binary.BigEndian.Uint64(b)
		return nil
	}); err != nil {
		return nil, err
	}
	var rec mailboxRecord
	if err := getJSON(txn, boxKey(id), &rec); err != nil {
		return nil, fmt.Errorf("read mailbox %s: %w", ref, err)
	}
	return &rec, nil
}

func (s *Store) view(ref MailboxRef) (*mailboxRecord, error) {
	var rec *mailboxRecord
	err := s.db.View(func(txn *badger.Txn) (err error) {
		rec, err = lookup(txn, ref)
		return err
	})
	return rec, err
}

// createLocked makes a new mailbox; the caller holds nsMu.
func (s *Store) createLocked(ref MailboxRef, specialUse string) (*mailboxRecord, error) {
	id, err := s.boxes.Next()
	if err != nil {
		return nil, fmt.Errorf("allocate mailbox id: %w", err)
	}
	id++ // ids start at 1
	uv := s.uvBase + uint32(id)
	if uv == 0 {
		uv = 1
	}
	rec := &mailboxRecord{ID: id, Ref: ref, UIDValidity: uv, UIDNext: 1, SpecialUse: specialUse, Created: time.Now().UTC()}
	if fn := s.folderOf.Load(); fn != nil && ref.Public() {
		rec.Folder = (*fn)(ref.Store, ref.Name)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(nameKey('n', ref)); err == nil {
			return fmt.Errorf("%s: %w", ref, ErrMailboxExists)
		}
		if err := txn.Set(nameKey('n', ref), binary.BigEndian.AppendUint64(nil, id)); err != nil {
			return err
		}
		return setJSON(txn, boxKey(id), rec)
	})
	if err != nil {
		return nil, fmt.Errorf("create mailbox %s: %w", ref, err)
	}
	s.mailboxGen.Add(1)
	return rec, nil
}

// ensure returns the mailbox, creating it if missing.
func (s *Store) ensure(ref MailboxRef, specialUse string) (*mailboxRecord, error) {
	if rec, err := s.view(ref); err == nil || !errors.Is(err, ErrNoMailbox) {
		return rec, err
	}
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	if rec, err := s.view(ref); err == nil || !errors.Is(err, ErrNoMailbox) {
		return rec, err
	}
	return s.createLocked(ref, specialUse)
}

// CreateMailbox creates a mailbox; specialUse is `\Sent` etc. or "".
func (s *Store) CreateMailbox(ctx context.Context, ref MailboxRef, specialUse string) error {
	ref = ref.normalize()
	if !ref.valid() {
		return fmt.Errorf("%q: %w", ref.Name, ErrBadName)
	}
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	_, err := s.createLocked(ref, specialUse)
	return err
}

// EnsureMailbox creates a mailbox unless it exists (used for INBOX and the
// special-use folders a user gets on first login).
func (s *Store) EnsureMailbox(ctx context.Context, ref MailboxRef, specialUse string) error {
	ref = ref.normalize()
	if !ref.valid() {
		return fmt.Errorf("%q: %w", ref.Name, ErrBadName)
	}
	_, err := s.ensure(ref, specialUse)
	return err
}

// MailboxExists reports whether a mailbox exists.
func (s *Store) MailboxExists(ctx context.Context, ref MailboxRef) bool {
	_, err := s.view(ref.normalize())
	return err == nil
}

// SpecialUse returns a mailbox's special-use attribute ("" if none).
func (s *Store) SpecialUse(ctx context.Context, ref MailboxRef) (string, error) {
	rec, err := s.view(ref.normalize())
	if err != nil {
		return "", err
	}
	return rec.SpecialUse, nil
}

// ListMailboxes lists an owner's mailboxes (a user's, or a public store's
// replicas when user is ""), sorted by name.
func (s *Store) ListMailboxes(ctx context.Context, store, user string) ([]MailboxInfo, error) {
	var out []MailboxInfo
	prefix := ownerPrefix('n', store, user)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := string(it.Item().Key()[len(prefix):])
			rec, err := lookup(txn, MailboxRef{Store: store, User: user, Name: name})
			if err != nil {
				return err
			}
			out = append(out, MailboxInfo{Name: name, SpecialUse: rec.SpecialUse, Folder: rec.Folder})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list mailboxes of %s/%s: %w", store, user, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteMailbox removes a mailbox and its messages. Its inferiors stay.
func (s *Store) DeleteMailbox(ctx context.Context, ref MailboxRef) error {
	ref = ref.normalize()
	defer s.mailboxGen.Add(1) // after the commits (a spurious change costs a reader one listing)
	s.nsMu.Lock()
	rec, err := s.view(ref)
	if err != nil {
		s.nsMu.Unlock()
		return err
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	// The name goes first, in its own commit: from then on the mailbox is
	// gone for everybody and the messages are unreachable garbage that the
	// loop below removes.
	err = s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(nameKey('n', ref)); err != nil {
			return err
		}
		return txn.Delete(boxKey(rec.ID))
	})
	mu.Unlock()
	s.nsMu.Unlock()
	if err != nil {
		return fmt.Errorf("delete mailbox %s: %w", ref, err)
	}
	s.notify.publish(rec.ID, Event{Kind: EventDeleted})
	return s.purge(rec.ID)
}

// purge removes every record of a deleted mailbox id, a batch at a time.
func (s *Store) purge(id uint64) error {
	for _, p := range []byte{'i', 'd', 'p', 'r', 'g', 'k', 'm', 't', 'v', 'h', 'e', 'w', 'y'} {
		prefix := idKey(p, id, 0)
		for {
			var keys [][]byte
			var bodies []messageRecord
			err := s.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: p == 'i'})
				defer it.Close()
				for it.Rewind(); it.Valid() && len(keys) < 500; it.Next() {
					keys = append(keys, it.Item().KeyCopy(nil))
					if p == 'i' {
						var m messageRecord
						if err := getJSON(txn, it.Item().Key(), &m); err == nil {
							bodies = append(bodies, m)
						}
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("purge mailbox %d: %w", id, err)
			}
			if len(keys) == 0 {
				break
			}
			err = s.db.Update(func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				for _, m := range bodies {
					if err := deleteBody(txn, m); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("purge mailbox %d: %w", id, err)
			}
		}
	}
	return nil
}

// TagMailbox records the identity of the public folder a replica holds
// (see mailboxRecord.Folder).
func (s *Store) TagMailbox(ctx context.Context, ref MailboxRef, folder string) error {
	ref = ref.normalize()
	defer s.mailboxGen.Add(1)
	err := s.db.Update(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		if rec.Folder == folder {
			return nil
		}
		rec.Folder = folder
		return setJSON(txn, boxKey(rec.ID), rec)
	})
	if err != nil {
		return fmt.Errorf("tag mailbox %s: %w", ref, err)
	}
	return nil
}

// MailboxFolder is the folder identity TagMailbox gave a replica ("" if
// none).
func (s *Store) MailboxFolder(ctx context.Context, ref MailboxRef) (string, error) {
	rec, err := s.view(ref.normalize())
	if err != nil {
		return "", err
	}
	return rec.Folder, nil
}

// RenameMailbox renames a mailbox and its inferiors ("a" -> "b" also moves
// "a/x" to "b/x"). Renaming INBOX moves its messages to the new name and
// leaves an empty INBOX, as IMAP requires. sep is the hierarchy separator;
// 0 renames the mailbox alone (no name holds a NUL).
func (s *Store) RenameMailbox(ctx context.Context, ref MailboxRef, newName string, sep rune) error {
	ref = ref.normalize()
	to := MailboxRef{Store: ref.Store, User: ref.User, Name: newName}.normalize()
	if !to.valid() {
		return fmt.Errorf("%q: %w", newName, ErrBadName)
	}
	defer s.mailboxGen.Add(1)
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	rec, err := s.view(ref)
	if err != nil {
		return err
	}
	if _, err := s.view(to); err == nil {
		return fmt.Errorf("%s: %w", to, ErrMailboxExists)
	}
	moves := map[string]string{ref.Name: to.Name}
	if ref.Name != "INBOX" {
		all, err := s.ListMailboxes(ctx, ref.Store, ref.User)
		if err != nil {
			return err
		}
		childPrefix := ref.Name + string(sep)
		for _, mb := range all {
			if strings.HasPrefix(mb.Name, childPrefix) {
				moves[mb.Name] = to.Name + string(sep) + mb.Name[len(childPrefix):]
			}
		}
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		for from, dst := range moves {
			fromRef := MailboxRef{Store: ref.Store, User: ref.User, Name: from}
			toRef := MailboxRef{Store: ref.Store, User: ref.User, Name: dst}
			if _, err := txn.Get(nameKey('n', toRef)); err == nil {
				return fmt.Errorf("%s: %w", toRef, ErrMailboxExists)
			}
			r, err := lookup(txn, fromRef)
			if err != nil {
				return err
			}
			r.Ref = toRef
			if err := txn.Delete(nameKey('n', fromRef)); err != nil {
				return err
			}
			if err := txn.Set(nameKey('n', toRef), binary.BigEndian.AppendUint64(nil, r.ID)); err != nil {
				return err
			}
			if err := setJSON(txn, boxKey(r.ID), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rename mailbox %s to %s: %w", ref, to.Name, err)
	}
	s.notify.publish(rec.ID, Event{Kind: EventDeleted})
	if ref.Name == "INBOX" {
		if _, err := s.createLocked(ref, ""); err != nil {
			return fmt.Errorf("recreate INBOX after rename: %w", err)
		}
	}
	return nil
}

// Subscribed lists the names an owner subscribed to (they need not exist).
func (s *Store) Subscribed(ctx context.Context, store, user string) ([]string, error) {
	var out []string
	prefix := ownerPrefix('s', store, user)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of %s/%s: %w", store, user, err)
	}
	return out, nil
}

// SetSubscribed subscribes or unsubscribes a mailbox name. For public
// folders, pass the reading user as User and the IMAP name as Name.
func (s *Store) SetSubscribed(ctx context.Context, ref MailboxRef, on bool) error {
	ref = ref.normalize()
	err := s.db.Update(func(txn *badger.Txn) error {
		if on {
			return txn.Set(nameKey('s', ref), nil)
		}
		return txn.Delete(nameKey('s', ref))
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", ref, err)
	}
	return nil
}

// Status returns a mailbox's counters.
func (s *Store) Status(ctx context.Context, ref MailboxRef) (Status, error) {
	st, _, err := s.Snapshot(ctx, ref, "")
	return st, err
}

// Provision creates an owner's default mailboxes the first time it is
// called for that owner, and never again: a user who deletes Trash does not
// get it back at the next login. It reports whether it created them.
func (s *Store) Provision(ctx context.Context, store, user string, boxes []MailboxInfo) (bool, error) {
	marker := nameKey('u', MailboxRef{Store: store, User: user})
	done := false
	if err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(marker)
		done = err == nil
		return nil
	}); err != nil {
		return false, err
	}
	if done {
		return false, nil
	}
	for _, b := range boxes {
		if err := s.EnsureMailbox(ctx, MailboxRef{Store: store, User: user, Name: b.Name}, b.SpecialUse); err != nil {
			return false, fmt.Errorf("provision %s/%s: %w", store, user, err)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(marker, nil) }); err != nil {
		return false, fmt.Errorf("provision %s/%s: %w", store, user, err)
	}
	return true, nil
}

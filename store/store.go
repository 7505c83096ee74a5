// Package store is pfrouter's message store: one badger database per
// server holding every store of that server — user mailboxes (mailbox
// stores) and public folder replicas (public stores).
//
// The queue manager calls Deliver; the POP3 server and the IMAP server
// (package imapd) read and change mailboxes through the rest of the API.
// Subscribe lets an IMAP session in IDLE learn of changes made by others
// in this process at once (SPEC A9).
//
// Layout (all keys are prefixed by one letter and a slash):
//
//	n/<store>\0<user>\0<name> -> mailbox id (8 bytes): the name index
//	x/<id>                    -> mailbox record (JSON): UIDVALIDITY, UIDNEXT, ...
//	i/<id><uid>               -> message record (JSON): size, date, class, flags, body
//	b/<body><chunk>           -> body bytes, in chunks below kv.MaxBatch
//	d/<id><delivery id>       -> uid: the idempotency record of Deliver
//	p/<id><viewer>\0<uid>     -> per-user flags of a public folder post
//	r/<id><viewer>            -> highest UID the viewer's sessions have seen (\Recent)
//	s/<store>\0<user>\0<name> -> subscription (may name a missing mailbox)
//	u/<store>\0<user>\0      -> the owner's default mailboxes were provisioned
//	c/...                     -> counters (c/cn: the change number clock)
//	g/ k/ m/ t/ v/            -> public folder change tracking (changes.go)
//
// Mailbox names are indirected through ids so that RENAME does not move
// messages, and so a deleted and recreated mailbox gets a new id and thus a
// new UIDVALIDITY.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"pfrouter/internal/kv"
)

// Errors callers map to protocol replies.
var (
	ErrNoMailbox     = errors.New("no such mailbox")
	ErrMailboxExists = errors.New("mailbox already exists")
	ErrNoMessage     = errors.New("no such message")
	ErrBadName       = errors.New("invalid mailbox name")
	ErrClosed        = errors.New("store is closed")
)

// Store is one server's message database.
type Store struct {
	db     *kv.DB
	log    *slog.Logger
	bodies *badger.Sequence
	boxes  *badger.Sequence
	uvBase uint32

	nsMu  sync.Mutex // serialises mailbox create/delete/rename
	locks sync.Map   // mailbox id -> *sync.Mutex: serialises UID allocation and flag updates

	notify notifier

	// Change numbers of public folder changes (changes.go).
	cnLast atomic.Uint64
	bootCN uint64
	feed   feed
	recent recentPosts // posts just added, for the replication source (recent.go)

	// folderOf names the folder identity a public folder replica created
	// now holds (SetFolderIdentity); nil: replicas are created untagged.
	folderOf atomic.Pointer[func(store, name string) string]

	// mailboxGen counts changes to the set of mailboxes, their names and
	// their folder tags (MailboxGeneration).
	mailboxGen atomic.Uint64
	// versions: public folder name (MailboxRef.String) -> *atomic.Uint64,
	// see ChangeVersion.
	versions sync.Map
}

// MailboxGeneration changes (grows) after every mailbox create, delete,
// rename or folder tag of this store, once that change is committed: a
// reader that reads it before listing mailboxes and finds it unchanged
// later knows its listing still holds. Package replication reconciles its
// replicas with the directory only when this or the directory changed.
func (s *Store) MailboxGeneration() uint64 { return s.mailboxGen.Load() }

// ChangeVersion changes (grows) after every committed change to what
// ChangesSince and CNSetOf read of the public folder replica ref: its
// log, CN set, horizon or resync cursors (a post, an expunge, a flag
// change, an applied batch, a compaction, a resync page). Together with
// MailboxGeneration (renames, deletes) it lets the replication source and
// puller skip, for a while, re-reading a folder in which nothing changed
// (package replication bounds how long: a change path that forgot to bump
// it delays replication, it never loses a change). Versions start at 0 in
// every run of the process.
func (s *Store) ChangeVersion(ref MailboxRef) uint64 {
	if v, ok := s.versions.Load(ref.normalize().String()); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

// changed bumps ref's ChangeVersion (after its commit) and wakes the
// replication source's long polls.
func (s *Store) changed(ref MailboxRef) {
	s.bumpVersion(ref)
	s.feed.signal()
}

func (s *Store) bumpVersion(ref MailboxRef) {
	k := ref.normalize().String()
	v, ok := s.versions.Load(k)
	if !ok {
		v, _ = s.versions.LoadOrStore(k, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// SetFolderIdentity makes every public folder replica created from now on
// carry the identity fn gives its folder (mailboxRecord.Folder), decided
// at the moment it is created: package replication then follows the
// replica by its folder through renames, even when the path it was
// created under passes to another folder right after.
func (s *Store) SetFolderIdentity(fn func(store, name string) string) { s.folderOf.Store(&fn) }

// Open opens (creating if needed) the message database in dir. Commits are
// fsync'd before they return.
//
// Every value (records and body chunks, below chunkSize) stays in badger's
// LSM tree and its write-ahead log (kv.Options.Inline): a commit is one
// write and one fdatasync, where a body in badger's value log took a second
// file and a second sync; the bodies are rewritten by compactions instead.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	return OpenWith(dir, logger, Options{})
}

// Options tune how a store uses badger. The zero value is Open's.
type Options struct {
	// BodiesInValueLog keeps bodies in badger's value log instead of the
	// LSM tree (config limits.store_bodies: value_log): two syncs per
	// commit, but compactions no longer copy the bodies, which costs less
	// CPU per message under load. A store opened either way reads what
	// the other wrote.
	BodiesInValueLog bool
}

// OpenWith is Open with options.
func OpenWith(dir string, logger *slog.Logger, o Options) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := kv.OpenDB(dir, logger, kv.Options{Inline: !o.BodiesInValueLog})
	if err != nil {
		return nil, fmt.Errorf("open message store: %w", err)
	}
	s := &Store{db: db, log: logger.With("component", "store")}
	if s.uvBase, err = s.loadUIDValidityBase(); err != nil {
		db.Close()
		return nil, err
	}
	if s.bodies, err = db.GetSequence([]byte("c/body"), 256); err != nil {
		db.Close()
		return nil, fmt.Errorf("open body sequence: %w", err)
	}
	if s.boxes, err = db.GetSequence([]byte("c/mailbox"), 16); err != nil {
		s.bodies.Release()
		db.Close()
		return nil, fmt.Errorf("open mailbox sequence: %w", err)
	}
	s.notify.init()
	if err := s.loadCN(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database. Subscribers' channels are closed.
func (s *Store) Close() error {
	s.notify.closeAll()
	errs := []error{s.bodies.Release(), s.boxes.Release(), s.db.Close()}
	return errors.Join(errs...)
}

func (s *Store) lock(id uint64) *sync.Mutex {
	m, _ := s.locks.LoadOrStore(id, &sync.Mutex{})
	return m.(*sync.Mutex)
}

package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// mailboxRecord is what x/<id> holds.
type mailboxRecord struct {
	ID          uint64     `json:"id"`
	Ref         MailboxRef `json:"ref"`
	UIDValidity uint32     `json:"uidvalidity"`
	UIDNext     uint32     `json:"uidnext"`
	SpecialUse  string     `json:"special_use,omitempty"`
	Created     time.Time  `json:"created"`
	// Folder is, for a public folder replica, the identity of the folder
	// it holds (directory.Folder.ID), set by TagMailbox: a folder's path
	// may later name another folder (concurrent renames onto one path),
	// and package replication finds the replica by it, not by its name.
	Folder string `json:"folder,omitempty"`
}

// messageRecord is what i/<id><uid> holds; the body is elsewhere so flag
// updates rewrite a few dozen bytes.
type messageRecord struct {
	Size   int64     `json:"size"`
	Date   time.Time `json:"date"`
	Class  string    `json:"class,omitempty"`
	Flags  []string  `json:"flags,omitempty"`
	Body   uint64    `json:"body"`
	Chunks uint32    `json:"chunks"`
	ID     string    `json:"id,omitempty"`
	// Item is the public folder post's replication identity (the String
	// of its add change's id, changes.go); "" in user mailboxes.
	Item string `json:"item,omitempty"`
	// ModSeq is the modseq of the message's last change (modseq.go): its
	// add, and in a user mailbox its last flag change.
	ModSeq uint64 `json:"ms,omitempty"`
	// Added is the modseq of the add, kept once ModSeq moves on ("" until
	// then: ModSeq is the add's).
	Added uint64 `json:"ma,omitempty"`
}

func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode record %q: %w", key, err)
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record %q: %w", key, err)
	}
	return txn.Set(key, b)
}

// System flags in their canonical spelling; IMAP flags are case-insensitive.
var systemFlags = []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}

// NormalizeFlags returns flags deduplicated (case-insensitively), system
// flags in canonical case, \Recent dropped (it is a session property, never
// stored), sorted.
func NormalizeFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if f == "" {
			continue
		}
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		for _, sf := range systemFlags {
			if strings.EqualFold(f, sf) {
				f = sf
			}
		}
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, f) }) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// HasFlag reports whether flags holds f, case-insensitively.
func HasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(o string) bool { return strings.EqualFold(o, f) })
}

// FlagOp says how SetFlags combines flags with a message's current ones.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsDel
)

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	switch op {
	case FlagsSet:
		return NormalizeFlags(flags)
	case FlagsAdd:
		return NormalizeFlags(append(slices.Clone(cur), flags...))
	default:
		out := make([]string, 0, len(cur))
		for _, f := range cur {
			if !HasFlag(flags, f) {
				out = append(out, f)
			}
		}
		return NormalizeFlags(out)
	}
}

package directory

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"

	"pfrouter/config"
)

// Snapshot is a consistent read-only view of the directory.
type Snapshot struct {
	txn *memdb.Txn
	d   *Directory
	st  *state // the version txn reads, and its routing index
}

// SameVersion reports whether s and o read the same directory version:
// nothing was written (no runtime change, no reload) between the two.
func (s *Snapshot) SameVersion(o *Snapshot) bool { return o != nil && s.st == o.st }

// Entry is what an address resolves to: exactly one of Folder and User.
type Entry struct {
	Folder *Folder
	User   *User
}

// Resolve maps a recipient address to a folder or user (R1): the domain must
// match an accepted domain exactly (case-insensitively), the local part
// matches case-insensitively unless the domain says otherwise.
func (s *Snapshot) Resolve(addr string) (Entry, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return Entry{}, ErrBadAddress
	}
	dom := addr[at+1:]
	if _, ok := s.d.domains[dom]; !ok {
		if _, ok := s.d.domains[strings.ToLower(dom)]; !ok {
			return Entry{}, fmt.Errorf("%s: %w", dom, ErrNotAccepted)
		}
	}
	raw, err := s.txn.First("addresses", "id", s.d.normalize(addr))
	if err != nil || raw == nil {
		return Entry{}, ErrUnknown
	}
	a := raw.(*address)
	if a.Folder != "" {
		f := s.Folder(a.Folder)
		if f == nil {
			return Entry{}, ErrUnknown
		}
		return Entry{Folder: f}, nil
	}
	u := s.User(a.User)
	if u == nil {
		return Entry{}, ErrUnknown
	}
	return Entry{User: u}, nil
}

// Org is the configuration the snapshot's directory was built from (the
// one in force: a reload swaps both).
func (s *Snapshot) Org() *config.Org { return s.d.org }

// Accepted reports whether a domain is one of the organization's.
func (s *Snapshot) Accepted(domain string) bool {
	_, ok := s.d.domains[strings.ToLower(domain)]
	return ok
}

func first[T any](s *Snapshot, table, index string, args ...any) *T {
	raw, err := s.txn.First(table, index, args...)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*T)
}

func all[T any](s *Snapshot, table, index string, args ...any) []*T {
	it, err := s.txn.Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

// Folder returns a folder by key (see FolderKey), or nil.
func (s *Snapshot) Folder(key string) *Folder { return first[Folder](s, "folders", "id", key) }

// User returns a user by name, or nil.
func (s *Snapshot) User(name string) *User { return first[User](s, "users", "id", name) }

// Server returns a server by name, or nil.
func (s *Snapshot) Server(name string) *Server { return first[Server](s, "servers", "id", name) }

// Store returns a store by name, or nil.
func (s *Snapshot) Store(name string) *Store { return first[Store](s, "stores", "id", name) }

// Hierarchy returns a hierarchy with its stores newest first, or nil.
func (s *Snapshot) Hierarchy(name string) *Hierarchy {
	return first[Hierarchy](s, "hierarchies", "id", name)
}

// Replicas lists the stores holding a replica of a folder, by store name
// (so ties between equally good replicas break by name, deterministically).
func (s *Snapshot) Replicas(folderKey string) []*Replica {
	return all[Replica](s, "replicas", "FolderKey", folderKey)
}

// Knows reports whether a public store's hierarchy contains a folder: false
// while the store's copy of the hierarchy is still incomplete (R12).
func (s *Snapshot) Knows(store, folderKey string) bool {
	st := s.Store(store)
	if st == nil || !st.Synced {
		return false
	}
	f := s.Folder(folderKey)
	return f != nil && f.Hierarchy == st.Hierarchy
}

// Servers lists every server, by name.
func (s *Snapshot) Servers() []*Server { return all[Server](s, "servers", "id") }

// Stores lists every store, by name.
func (s *Snapshot) Stores() []*Store { return all[Store](s, "stores", "id") }

// StoresOn lists the stores of a server.
func (s *Snapshot) StoresOn(server string) []*Store { return all[Store](s, "stores", "Server", server) }

// Folders lists every folder, by key.
func (s *Snapshot) Folders() []*Folder { return all[Folder](s, "folders", "id") }

// FoldersOf lists a hierarchy's folders.
func (s *Snapshot) FoldersOf(hierarchy string) []*Folder {
	return all[Folder](s, "folders", "Hierarchy", hierarchy)
}

// ReplicasIn lists the replicas a store holds.
func (s *Snapshot) ReplicasIn(store string) []*Replica {
	return all[Replica](s, "replicas", "Store", store)
}

// Users lists every user, by name.
func (s *Snapshot) Users() []*User { return all[User](s, "users", "id") }

// Hierarchies lists every hierarchy, by name.
func (s *Snapshot) Hierarchies() []*Hierarchy { return all[Hierarchy](s, "hierarchies", "id") }

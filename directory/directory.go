// Package directory is pfrouter's in-memory directory (what Active Directory
// is to Exchange): servers, stores, routing groups, hierarchies with their
// store lists, folders' mail attributes, replicas and users, held in go-memdb
// tables with the indexes routing needs.
//
// Reads go through a Snapshot, a lock-free read transaction that never sees
// a half-applied change; runtime changes (a new store, a new replica, a store
// whose hierarchy finished replicating) are write transactions. The config
// package feeds it; the routing packages (hierarchy, replica, routing) read
// it; the admin API changes it.
package directory

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"

	"pfrouter/config"
)

// Errors Resolve returns; callers map them to protocol replies.
var (
	ErrNotAccepted = errors.New("domain is not an accepted domain of the organization")
	ErrUnknown     = errors.New("no folder or user has this address")
	ErrBadAddress  = errors.New("not a valid address")
)

// Server is a pfrouter node.
type Server struct {
	Name, Site, RoutingGroup string
	Listen                   config.Listen
	// ReferralList is the server's custom public folder referral list
	// (config referral_list); empty means referrals are computed.
	ReferralList []config.ReferralTarget
}

// Store is a public or mailbox store on a server.
type Store struct {
	Name, Kind, Server, RoutingGroup, Hierarchy string
	Created                                     time.Time
	// Synced is false while the store's copy of its hierarchy is incomplete:
	// it knows no folder yet (R12).
	Synced bool
	// HierarchyPending is true while a public store added at run time has
	// not yet confirmed that its server holds the whole hierarchy (package
	// replication); step 1 skips it whatever its age (issue 12).
	HierarchyPending bool
}

// Hierarchy is a top-level hierarchy with the stores that hold it, most
// recently created first (R2).
type Hierarchy struct {
	Name, TLH string
	Stores    []*Store
}

// Folder is a public folder's directory entry (its mail attributes). Its
// replica list is not here: it belongs to the hierarchy (see Replicas).
type Folder struct {
	Key string // hierarchy + ":" + path
	// ID is the folder's identity: the key the organization file gave it.
	// It stays the same through renames, so runtime changes (a rename, a
	// delete, a replica added) name the folder by it on every server,
	// whatever path each server knows it under at the time.
	ID             string
	Path           string
	Hierarchy      string
	TLH            string
	MailEnabled    bool
	Hidden         bool
	Alias          string
	Addresses      []string
	MaxMessageSize int64
	AcceptFrom     []string
	RejectFrom     []string
	Permissions    map[string]string
	// PermissionRevs holds, per principal (lower case), the runtime change
	// that last set or removed its entry in Permissions (none: the
	// organization file's), so an older permission change never undoes a
	// newer one (see SetFolderPermission).
	PermissionRevs map[string]Rev
	// Replication is the folder's own replication schedule (config
	// folders[].replication), nil: the organization's
	// (config.Org.FolderReplication merges them).
	Replication *config.FolderReplication
	// Rev is the runtime change that gave the folder its path (zero: the
	// organization file's): a rename applies only over an older one, so
	// servers that receive renames in different orders agree.
	Rev Rev
	// Wanted is the key the folder's newest rename named ("": its Key).
	// Two folders renamed concurrently onto one path both want it: the
	// newer rename holds it, the other folder sits at a conflict key
	// until the path is free again (see placeFolders).
	Wanted string
}

// Rev orders runtime changes: a gossip record's version, ties broken by
// its origin server.
type Rev struct {
	Version uint64
	Origin  string
}

// Before reports whether r is older than o.
func (r Rev) Before(o Rev) bool {
	if r.Version != o.Version {
		return r.Version < o.Version
	}
	return r.Origin < o.Origin
}

// Moved says what became of a folder key that no longer names a folder:
// renamed to To, or deleted (To ""). Package replication renames or
// deletes the store replicas still under the old key.
type Moved struct {
	Key, To string
}

// User is a mailbox owner.
type User struct {
	Name         string
	Addresses    []string
	MailboxStore string
	Server       string
	Site         string
	PasswordHash string
	Password     string
	POPEnabled   bool
	IMAPEnabled  bool
	Kind         string
}

// Replica says that a public store holds a content replica of a folder.
type Replica struct {
	ID        string // folder key + "|" + store
	FolderKey string
	Store     string
}

// address maps a normalised address to a folder or a user.
type address struct {
	Addr   string
	Folder string // folder key, or ""
	User   string // user name, or ""
}

func schema() *memdb.DBSchema {
	str := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: field, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	id := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		"servers":     {Name: "servers", Indexes: map[string]*memdb.IndexSchema{"id": id("Name"), "RoutingGroup": str("RoutingGroup")}},
		"stores":      {Name: "stores", Indexes: map[string]*memdb.IndexSchema{"id": id("Name"), "Server": str("Server"), "Hierarchy": {Name: "Hierarchy", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Hierarchy"}}}},
		"hierarchies": {Name: "hierarchies", Indexes: map[string]*memdb.IndexSchema{"id": id("Name")}},
		"folders":     {Name: "folders", Indexes: map[string]*memdb.IndexSchema{"id": id("Key"), "Hierarchy": str("Hierarchy"), "ID": {Name: "ID", Unique: true, AllowMissing: true, Indexer: movedIDIndex{}}}},
		"moved":       {Name: "moved", Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
		"replicas":    {Name: "replicas", Indexes: map[string]*memdb.IndexSchema{"id": id("ID"), "FolderKey": str("FolderKey"), "Store": str("Store")}},
		"users":       {Name: "users", Indexes: map[string]*memdb.IndexSchema{"id": id("Name"), "MailboxStore": str("MailboxStore")}},
		"addresses":   {Name: "addresses", Indexes: map[string]*memdb.IndexSchema{"id": id("Addr")}},
	}}
}

// Options tune how a directory is built.
type Options struct {
	// FirstSeen gives the created time of a store whose config has none:
	// the time the store first appeared (servers persist it in their data
	// directory). Nil means now.
	FirstSeen func(store string) time.Time
	Now       func() time.Time
}

// Directory is the organization's directory.
type Directory struct {
	db      *memdb.MemDB
	org     *config.Org
	domains map[string]bool // accepted domain -> local part case-sensitive
	writeMu sync.Mutex      // memdb allows one writer; this keeps read-modify-write changes atomic
	now     func() time.Time
	// swapped is the directory a config reload put in force (replace.go).
	swapped atomic.Pointer[Directory]
	// cur is the version snapshots read (index.go): writers publish a new
	// one after each commit.
	cur atomic.Pointer[state]
}

// New loads an organization into a new directory.
func New(org *config.Org, opts Options) (*Directory, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("directory schema: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	firstSeen := opts.FirstSeen
	if firstSeen == nil {
		t := now()
		firstSeen = func(string) time.Time { return t }
	}
	d := &Directory{db: db, org: org, domains: map[string]bool{}, now: now}
	for _, dm := range org.Domains {
		d.domains[dm.Name] = dm.CaseSensitiveLocalPart
	}
	b := &batch{db: db, txn: db.Txn(true)}
	defer func() { b.txn.Abort() }()
	site := map[string]string{}
	for _, h := range org.Hierarchies {
		if err := b.insert("hierarchies", &Hierarchy{Name: h.Name, TLH: h.TLH}); err != nil {
			return nil, err
		}
	}
	for _, s := range org.Servers {
		site[s.Name] = s.Site
		if err := b.insert("servers", &Server{Name: s.Name, Site: s.Site, RoutingGroup: s.RoutingGroup, Listen: s.Listen, ReferralList: s.ReferralList}); err != nil {
			return nil, err
		}
		for _, st := range s.Stores {
			created := st.Created
			if created.IsZero() {
				created = firstSeen(st.Name)
			}
			synced := st.HierarchySynced == nil || *st.HierarchySynced
			if err := insertStore(b.txn, &Store{Name: st.Name, Kind: st.Kind, Server: s.Name, RoutingGroup: s.RoutingGroup, Hierarchy: st.Hierarchy, Created: created, Synced: synced}); err != nil {
				return nil, err
			}
		}
	}
	tlh := map[string]string{}
	for _, h := range org.Hierarchies {
		tlh[h.Name] = h.TLH
	}
	for i := range org.Folders {
		cf := &org.Folders[i]
		f := &Folder{
			Key: FolderKey(cf.Hierarchy, cf.Path), ID: FolderKey(cf.Hierarchy, cf.Path), Path: cf.Path, Hierarchy: cf.Hierarchy, TLH: tlh[cf.Hierarchy],
			MailEnabled: org.FolderMailEnabled(cf), Hidden: org.FolderHidden(cf), Alias: cf.Alias,
			Addresses: cf.Addresses, MaxMessageSize: int64(cf.MaxMessageSize),
			AcceptFrom: cf.AcceptFrom, RejectFrom: cf.RejectFrom, Permissions: cf.Permissions, Replication: cf.Replication,
		}
		if err := b.insert("folders", f); err != nil {
			return nil, err
		}
		addrs := append([]string(nil), cf.Addresses...)
		if cf.Alias != "" {
			for _, dm := range org.Domains {
				addrs = append(addrs, cf.Alias+"@"+dm.Name)
			}
		}
		for _, a := range addrs {
			if err := b.insert("addresses", &address{Addr: d.normalize(a), Folder: f.Key}); err != nil {
				return nil, err
			}
		}
		for _, r := range cf.Replicas {
			if err := b.insert("replicas", &Replica{ID: f.Key + "|" + r, FolderKey: f.Key, Store: r}); err != nil {
				return nil, err
			}
		}
	}
	for _, cu := range org.Users {
		st, err := b.txn.First("stores", "id", cu.MailboxStore)
		if err != nil || st == nil {
			return nil, fmt.Errorf("user %s: mailbox store %q not found", cu.Name, cu.MailboxStore)
		}
		srv := st.(*Store).Server
		u := &User{Name: cu.Name, Addresses: cu.Addresses, MailboxStore: cu.MailboxStore, Server: srv, Site: site[srv],
			PasswordHash: cu.PasswordHash, Password: cu.Password, POPEnabled: config.Enabled(cu.POPEnabled),
			IMAPEnabled: config.Enabled(cu.IMAPEnabled), Kind: cu.Kind}
		if err := b.insert("users", u); err != nil {
			return nil, err
		}
		for _, a := range cu.Addresses {
			if err := b.insert("addresses", &address{Addr: d.normalize(a), User: u.Name}); err != nil {
				return nil, err
			}
		}
	}
	b.txn.Commit()
	d.publish()
	return d, nil
}

// batchSize bounds New's write transactions. go-memdb's radix-tree
// transaction keeps the nodes it has copied in a bounded cache; a single
// transaction of millions of inserts overflows it and copies nodes again and
// again. Nothing can read the directory before New returns, so committing
// in batches is invisible to callers.
const batchSize = 4096

type batch struct {
	db  *memdb.MemDB
	txn *memdb.Txn
	n   int
}

func (b *batch) insert(table string, obj any) error {
	if err := b.txn.Insert(table, obj); err != nil {
		return err
	}
	if b.n++; b.n%batchSize == 0 {
		b.txn.Commit()
		b.txn = b.db.Txn(true)
	}
	return nil
}

// FolderKey is a folder's identity: its hierarchy and path.
func FolderKey(hierarchy, path string) string { return hierarchy + ":" + path }

// insertStore adds a store and, for a public store, puts it in its
// hierarchy's newest-first list (copy on write: snapshots keep their list).
func insertStore(txn *memdb.Txn, st *Store) error {
	if err := txn.Insert("stores", st); err != nil {
		return err
	}
	if st.Kind != config.StorePublic {
		return nil
	}
	raw, err := txn.First("hierarchies", "id", st.Hierarchy)
	if err != nil || raw == nil {
		return fmt.Errorf("store %s: hierarchy %q not found", st.Name, st.Hierarchy)
	}
	h := *raw.(*Hierarchy)
	h.Stores = append(append(make([]*Store, 0, len(h.Stores)+1), h.Stores...), st)
	sortNewestFirst(h.Stores)
	return txn.Insert("hierarchies", &h)
}

func sortNewestFirst(s []*Store) {
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].Created.Equal(s[j].Created) {
			return s[i].Created.After(s[j].Created)
		}
		return s[i].Name < s[j].Name
	})
}

// normalize lowercases the domain, and the local part unless the domain
// says local parts are case-sensitive (R1).
func (d *Directory) normalize(addr string) string { return normalize(d.domains, addr) }

func normalize(domains map[string]bool, addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return strings.ToLower(addr)
	}
	dom := strings.ToLower(addr[at+1:])
	local := addr[:at]
	if !domains[dom] {
		local = strings.ToLower(local)
	}
	return local + "@" + dom
}

// Org is the configuration the directory was built from.
func (d *Directory) Org() *config.Org { return d.live().org }

// Snapshot returns a consistent, lock-free view.
func (d *Directory) Snapshot() *Snapshot {
	l := d.live()
	st := l.cur.Load()
	return &Snapshot{txn: st.db.Txn(false), d: l, st: st}
}

// AddStore adds a store at runtime (O1). Its created time is now unless
// given; a public store joins its hierarchy's list.
func (d *Directory) AddStore(st Store) (*Store, error) {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	if raw, _ := txn.First("stores", "id", st.Name); raw != nil {
		return nil, fmt.Errorf("store %q already exists", st.Name)
	}
	raw, _ := txn.First("servers", "id", st.Server)
	if raw == nil {
		return nil, fmt.Errorf("server %q is not defined", st.Server)
	}
	st.RoutingGroup = raw.(*Server).RoutingGroup
	switch st.Kind {
	case config.StorePublic:
		if h, _ := txn.First("hierarchies", "id", st.Hierarchy); h == nil {
			return nil, fmt.Errorf("hierarchy %q is not defined", st.Hierarchy)
		}
	case config.StoreMailbox:
		st.Hierarchy = ""
	default:
		return nil, fmt.Errorf("store kind %q is not public or mailbox", st.Kind)
	}
	if st.Created.IsZero() {
		st.Created = d.now()
	}
	s := st
	if err := insertStore(txn, &s); err != nil {
		return nil, err
	}
	txn.Commit()
	l.publish()
	return &s, nil
}

// AddReplica makes a public store hold a replica of a folder.
func (d *Directory) AddReplica(hierarchy, path, store string) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	key := FolderKey(hierarchy, path)
	if f, _ := txn.First("folders", "id", key); f == nil {
		return fmt.Errorf("folder %q is not in hierarchy %q", path, hierarchy)
	}
	raw, _ := txn.First("stores", "id", store)
	if raw == nil {
		return fmt.Errorf("store %q is not defined", store)
	}
	if st := raw.(*Store); st.Kind != config.StorePublic || st.Hierarchy != hierarchy {
		return fmt.Errorf("store %q does not hold hierarchy %q", store, hierarchy)
	}
	if err := txn.Insert("replicas", &Replica{ID: key + "|" + store, FolderKey: key, Store: store}); err != nil {
		return err
	}
	txn.Commit()
	l.publish()
	return nil
}

// SetSynced marks whether a public store's copy of its hierarchy is complete.
func (d *Directory) SetSynced(store string, synced bool) error {
	return d.updateStore(store, func(st *Store) { st.Synced = synced })
}

// SetHierarchyPending marks whether a public store's hierarchy is still
// being replicated (step 1 skips it while it is).
func (d *Directory) SetHierarchyPending(store string, pending bool) error {
	return d.updateStore(store, func(st *Store) { st.HierarchyPending = pending })
}

// updateStore changes a store record and its hierarchy's copy of it.
func (d *Directory) updateStore(store string, change func(*Store)) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	raw, _ := txn.First("stores", "id", store)
	if raw == nil {
		return fmt.Errorf("store %q is not defined", store)
	}
	st := *raw.(*Store)
	change(&st)
	if err := txn.Insert("stores", &st); err != nil {
		return err
	}
	if st.Kind == config.StorePublic {
		hraw, _ := txn.First("hierarchies", "id", st.Hierarchy)
		h := *hraw.(*Hierarchy)
		h.Stores = append([]*Store(nil), h.Stores...)
		for i, s := range h.Stores {
			if s.Name == store {
				h.Stores[i] = &st
			}
		}
		if err := txn.Insert("hierarchies", &h); err != nil {
			return err
		}
	}
	txn.Commit()
	l.publish()
	return nil
}

package directory

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"

	"pfrouter/permissions"
)

// Index is a read-optimized, immutable copy of one directory version for
// the routing hot path (package routing's Route): every lookup a decision
// makes is a slice index or one map read, instead of go-memdb radix walks
// over a heap of hundreds of megabytes. It shares the directory's records
// (pointers and strings), so it costs a few tens of bytes per folder.
//
// Stores, servers, routing groups, hierarchies, folders and users are
// numbered by their position in its slices; the numbers mean nothing
// outside one Index. Callers must not modify anything reachable from it.
type Index struct {
	Servers       []string     // server names
	RoutingGroups []string     // routing-group names, as the directory has them
	Stores        []IndexStore // every store
	Hierarchies   []IndexHierarchy
	Folders       []IndexFolder
	Users         []*User

	serverID map[string]int32
	rgID     map[string]int32
	storeID  map[string]int32
	hierID   map[string]int32
	addrs    map[string]int32 // normalised address -> folder id, or -1-user id
	domains  map[string]bool  // shared with the Directory (never written after New)

	// ext holds a view derived from this index by a consumer (routing
	// binds it to a link-state graph); the index never reads it.
	ext atomic.Value
}

// IndexStore is a store with its server, routing group and hierarchy as
// ids. The fields routing reads for a candidate or a choice are copied in,
// so a decision never follows Store (a cache miss on a large heap).
// Index.Stores is in name order: comparing two store ids compares their
// names (R9's tie-break).
type IndexStore struct {
	*Store
	Name        string // Store.Name
	ServerID    int32  // into Index.Servers
	RGID        int32  // into Index.RoutingGroups: the store's RoutingGroup
	HierarchyID int32  // into Index.Hierarchies: the store's Hierarchy, -1 if none is defined by that name
	Synced      bool   // Store.Synced
}

// Knows is Snapshot.Knows for an indexed store and folder: the store's
// copy of the folder's hierarchy is complete.
func (x *Index) Knows(store int32, f *IndexFolder) bool {
	st := &x.Stores[store]
	if !st.Synced {
		return false
	}
	if f.HierarchyID >= 0 {
		return st.HierarchyID == f.HierarchyID
	}
	return st.Hierarchy == f.Hierarchy
}

// IndexHierarchy is a hierarchy's stores, most recently created first (R2),
// as in Hierarchy.Stores, stored contiguously for step 1's scan.
type IndexHierarchy struct {
	Name   string
	Stores []HierarchyStore
}

// HierarchyStore is one store of a hierarchy as step 1 sees it: 24 bytes,
// so a hierarchy of 20 stores is eight cache lines.
type HierarchyStore struct {
	Created  int64 // Store.Created as UnixNanos
	ID       int32 // into Index.Stores
	ServerID int32
	RGID     int32
	Pending  bool // Store.HierarchyPending
}

// UnixNanos is t as nanoseconds since 1970, clamped to the int64 range
// (time.Time.UnixNano is undefined outside 1678–2262), so comparisons keep
// the order of time.Time.Sub, which saturates.
func UnixNanos(t time.Time) int64 {
	const limit = math.MaxInt64 / int64(time.Second)
	switch sec := t.Unix(); {
	case sec < -limit:
		return math.MinInt64
	case sec > limit-1:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// IndexFolder is a folder with its hierarchy and replica stores as ids,
// and what an anonymous sender's checks need copied in, so the common
// decision reads this record and not Folder.
type IndexFolder struct {
	*Folder
	Path        string  // Folder.Path
	Replicas    []int32 // stores holding a replica, by store name (as Snapshot.Replicas)
	HierarchyID int32   // into Index.Hierarchies, -1 if the hierarchy is not defined
	// Open: mail-enabled (R15), no accept or reject list (R11) and
	// Anonymous may create items (R17), so an anonymous sender's message
	// passes the folder checks unless it is over MaxMessageSize.
	Open bool
	// AnonymousRole is permissions.RoleFor(Permissions, "", false): most
	// mail is anonymous, and the lookup walks the permission map.
	AnonymousRole permissions.Role
}

// state is one directory version: a point-in-time copy of the database
// (go-memdb snapshots are a root pointer) and its index, built on first
// use. Every write publishes a new state, so an index never describes a
// different version than the snapshot that hands it out.
type state struct {
	db    *memdb.MemDB
	once  sync.Once
	index *Index
}

// publish puts the database's current contents in force for new
// snapshots. Writers call it after Commit, holding writeMu.
func (d *Directory) publish() { d.cur.Store(&state{db: d.db.Snapshot()}) }

// Index returns the read-optimized view of this snapshot's version,
// building it on the first call for the version (for a directory of
// 200,000 folders, about a second; later calls are free).
func (s *Snapshot) Index() *Index {
	st := s.st
	st.once.Do(func() { st.index = buildIndex(s) })
	return st.index
}

func buildIndex(s *Snapshot) *Index {
	x := &Index{serverID: map[string]int32{}, rgID: map[string]int32{}, storeID: map[string]int32{}, hierID: map[string]int32{}, domains: s.d.domains}
	server := func(name string) int32 {
		if i, ok := x.serverID[name]; ok {
			return i
		}
		x.serverID[name] = int32(len(x.Servers))
		x.Servers = append(x.Servers, name)
		return int32(len(x.Servers) - 1)
	}
	rg := func(name string) int32 {
		if i, ok := x.rgID[name]; ok {
			return i
		}
		x.rgID[name] = int32(len(x.RoutingGroups))
		x.RoutingGroups = append(x.RoutingGroups, name)
		return int32(len(x.RoutingGroups) - 1)
	}
	for _, sv := range s.Servers() {
		server(sv.Name)
		rg(sv.RoutingGroup)
	}
	for _, h := range s.Hierarchies() {
		x.hierID[h.Name] = int32(len(x.Hierarchies))
		x.Hierarchies = append(x.Hierarchies, IndexHierarchy{Name: h.Name})
	}
	stores := s.Stores()
	// The table's key order is byte order of the name, as Go compares
	// strings; sorted again so the promise does not rest on the schema.
	slices.SortStableFunc(stores, func(a, b *Store) int { return strings.Compare(a.Name, b.Name) })
	for _, st := range stores {
		x.storeID[st.Name] = int32(len(x.Stores))
		h, ok := x.hierID[st.Hierarchy]
		if !ok {
			h = -1
		}
		x.Stores = append(x.Stores, IndexStore{Store: st, Name: st.Name, ServerID: server(st.Server), RGID: rg(st.RoutingGroup), HierarchyID: h, Synced: st.Synced})
	}
	for hi, h := range s.Hierarchies() {
		ih := &x.Hierarchies[hi]
		ih.Stores = make([]HierarchyStore, 0, len(h.Stores))
		for _, st := range h.Stores {
			if i, ok := x.storeID[st.Name]; ok {
				is := &x.Stores[i]
				ih.Stores = append(ih.Stores, HierarchyStore{Created: UnixNanos(is.Created), ID: i, ServerID: is.ServerID, RGID: is.RGID, Pending: is.HierarchyPending})
			}
		}
	}
	folderID := map[string]int32{}
	it, err := s.txn.Get("folders", "id")
	if err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			f := raw.(*Folder)
			h, ok := x.hierID[f.Hierarchy]
			if !ok {
				h = -1
			}
			folderID[f.Key] = int32(len(x.Folders))
			anon := permissions.RoleFor(f.Permissions, "", false)
			open := f.MailEnabled && len(f.AcceptFrom) == 0 && len(f.RejectFrom) == 0 && permissions.Of(anon).CreateItems
			x.Folders = append(x.Folders, IndexFolder{Folder: f, Path: f.Path, HierarchyID: h, Open: open, AnonymousRole: anon})
		}
	}
	// Folders in key order (the table's id order, checked: FolderID
	// searches it).
	if !slices.IsSortedFunc(x.Folders, func(a, b IndexFolder) int { return strings.Compare(a.Key, b.Key) }) {
		slices.SortStableFunc(x.Folders, func(a, b IndexFolder) int { return strings.Compare(a.Key, b.Key) })
		for i := range x.Folders {
			folderID[x.Folders[i].Key] = int32(i)
		}
	}
	// Replicas in the order of the table's id (folder key|store): each
	// folder's come together, by store name. One backing array for all.
	var flat []int32
	type span struct{ folder, start int32 }
	var spans []span
	if it, err := s.txn.Get("replicas", "id"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			r := raw.(*Replica)
			fi, okF := folderID[r.FolderKey]
			si, okS := x.storeID[r.Store]
			if !okF || !okS {
				continue // step 2 skips replicas of unknown stores
			}
			if len(spans) == 0 || spans[len(spans)-1].folder != fi {
				spans = append(spans, span{fi, int32(len(flat))})
			}
			flat = append(flat, si)
		}
	}
	flat = flat[:len(flat):len(flat)]
	for i, sp := range spans {
		end := int32(len(flat))
		if i+1 < len(spans) {
			end = spans[i+1].start
		}
		f := &x.Folders[sp.folder]
		if f.Replicas != nil {
			// Not contiguous after all (cannot happen with keys sorted by
			// prefix); keep Snapshot.Replicas' order by merging.
			f.Replicas = mergeByName(x, f.Replicas, flat[sp.start:end])
			continue
		}
		f.Replicas = flat[sp.start:end:end]
	}
	userID := map[string]int32{}
	for _, u := range s.Users() {
		userID[u.Name] = int32(len(x.Users))
		x.Users = append(x.Users, u)
	}
	x.addrs = map[string]int32{}
	if it, err := s.txn.Get("addresses", "id"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			a := raw.(*address)
			if a.Folder != "" {
				if fi, ok := folderID[a.Folder]; ok {
					x.addrs[a.Addr] = fi
				}
				continue
			}
			if ui, ok := userID[a.User]; ok {
				x.addrs[a.Addr] = -1 - ui
			}
		}
	}
	return x
}

func mergeByName(x *Index, a, b []int32) []int32 {
	out := append(append([]int32(nil), a...), b...)
	for i := 1; i < len(out); i++ { // tiny lists: insertion sort
		for j := i; j > 0 && x.Stores[out[j]].Name < x.Stores[out[j-1]].Name; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ServerID returns a server's id.
func (x *Index) ServerID(name string) (int32, bool) {
	i, ok := x.serverID[name]
	return i, ok
}

// FolderID returns the id of the folder with key (Folder.Key), by binary
// search: Folders is in key order.
func (x *Index) FolderID(key string) (int32, bool) {
	i, ok := slices.BinarySearchFunc(x.Folders, key, func(f IndexFolder, k string) int { return strings.Compare(f.Key, k) })
	return int32(i), ok
}

// RoutingGroupID returns a routing group's id.
func (x *Index) RoutingGroupID(name string) (int32, bool) {
	i, ok := x.rgID[name]
	return i, ok
}

// StoreID returns a store's id.
func (x *Index) StoreID(name string) (int32, bool) {
	i, ok := x.storeID[name]
	return i, ok
}

// Resolve is Snapshot.Resolve by id: exactly one of folder and user is
// >= 0 when err is nil. It errs exactly when Snapshot.Resolve does, with
// the same sentinel errors (unwrapped), and allocates only for addresses
// that need case folding.
func (x *Index) Resolve(addr string) (folder, user int32, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return -1, -1, ErrBadAddress
	}
	dom := addr[at+1:]
	if _, ok := x.domains[dom]; !ok {
		if _, ok := x.domains[strings.ToLower(dom)]; !ok {
			return -1, -1, ErrNotAccepted
		}
	}
	key := addr
	if !lowerASCII(addr) {
		key = normalize(x.domains, addr)
	}
	i, ok := x.addrs[key]
	switch {
	case !ok:
		return -1, -1, ErrUnknown
	case i >= 0:
		return i, -1, nil
	default:
		return -1, -1 - i, nil
	}
}

// lowerASCII reports whether normalize would return s unchanged: plain
// ASCII without capitals.
func lowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// Ext returns the value a consumer stored with SetExt, or nil.
func (x *Index) Ext() any { return x.ext.Load() }

// SetExt stores a view a consumer derived from this index (routing keeps
// the index bound to the latest link-state graph here). All values stored
// must have the same concrete type.
func (x *Index) SetExt(v any) { x.ext.Store(v) }

package directory

import (
	"hash/maphash"
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
	addrs    addrTable       // normalised address -> folder id, or -1-user id
	domains  map[string]bool // shared with the Directory (never written after New)
	roles    []permissions.Role
	// replicas holds the replica lists of folders with more than fit in
	// IndexFolder (Replicas).
	replicas []int32

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
// decision reads this record and not Folder: 64 bytes, one cache line
// (the big benchmark org's Folders are 12.8 MB read at random).
type IndexFolder struct {
	Path string // Folder.Path
	*Folder
	MaxMessageSize int64 // Folder.MaxMessageSize
	HierarchyID    int32 // into Index.Hierarchies, -1 if the hierarchy is not defined
	// Open: mail-enabled (R15), no accept or reject list (R11) and
	// Anonymous may create items (R17), so an anonymous sender's message
	// passes the folder checks unless it is over MaxMessageSize.
	Open bool
	anon uint8 // AnonymousRole, into Index.roles
	// nrep replicas are in rep; more (nrep == repMore) are in
	// Index.replicas from rep[0], rep[1] of them.
	nrep uint8
	rep  [6]int32
}

const repMore = 255

// Replicas are the stores holding a replica of f, by store name (as
// Snapshot.Replicas). The slice is the index's: do not modify it.
func (x *Index) Replicas(f *IndexFolder) []int32 {
	if f.nrep == repMore {
		return x.replicas[f.rep[0] : f.rep[0]+f.rep[1]]
	}
	return f.rep[:f.nrep]
}

// AnonymousRole is permissions.RoleFor(f.Permissions, "", false): most
// mail is anonymous, and the lookup walks the permission map.
func (x *Index) AnonymousRole(f *IndexFolder) permissions.Role { return x.roles[f.anon] }

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
			ai := slices.Index(x.roles, anon)
			if ai < 0 {
				ai = len(x.roles)
				x.roles = append(x.roles, anon)
			}
			x.Folders = append(x.Folders, IndexFolder{Folder: f, Path: f.Path, MaxMessageSize: f.MaxMessageSize, HierarchyID: h, Open: open, anon: uint8(ai)})
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
	lists := make([][]int32, len(x.Folders))
	for i, sp := range spans {
		end := int32(len(flat))
		if i+1 < len(spans) {
			end = spans[i+1].start
		}
		if l := lists[sp.folder]; l != nil {
			// Not contiguous after all (cannot happen with keys sorted by
			// prefix); keep Snapshot.Replicas' order by merging.
			lists[sp.folder] = mergeByName(x, l, flat[sp.start:end])
			continue
		}
		lists[sp.folder] = flat[sp.start:end:end]
	}
	for i, l := range lists {
		f := &x.Folders[i]
		if len(l) <= len(f.rep) {
			f.nrep = uint8(copy(f.rep[:], l))
			continue
		}
		f.nrep, f.rep[0], f.rep[1] = repMore, int32(len(x.replicas)), int32(len(l))
		x.replicas = append(x.replicas, l...)
	}
	userID := map[string]int32{}
	for _, u := range s.Users() {
		userID[u.Name] = int32(len(x.Users))
		x.Users = append(x.Users, u)
	}
	var keys []string
	var targets []int32
	if it, err := s.txn.Get("addresses", "id"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			a := raw.(*address)
			if a.Folder != "" {
				if fi, ok := folderID[a.Folder]; ok {
					keys, targets = append(keys, a.Addr), append(targets, fi)
				}
				continue
			}
			if ui, ok := userID[a.User]; ok {
				keys, targets = append(keys, a.Addr), append(targets, -1-ui)
			}
		}
	}
	x.addrs = newAddrTable(keys, targets)
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
	i, ok := x.addrs.get(key)
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

// addrTable maps normalised addresses to ids: an open-addressed table of
// 16-byte slots (hash tag, id, the key's place in one byte arena), at most
// 80% full (a hit probes about three adjacent slots: one cache line). A lookup reads one slot line and the key's bytes, where a Go
// map of 200,000 strings reads a table, a group and a string header and
// its bytes scattered over the directory's heap; neither array holds a
// pointer, so the collector does not scan them.
type addrTable struct {
	seed  maphash.Seed
	slots []addrSlot // len a power of two
	keys  []byte
}

type addrSlot struct {
	tag uint32 // the hash's high half; 0 with n == 0: empty
	id  int32
	off uint32 // key bytes: keys[off:off+n]
	n   uint32
}

func newAddrTable(keys []string, ids []int32) addrTable {
	t := addrTable{seed: maphash.MakeSeed()}
	size := 8
	for 4*size < 5*len(keys) { // at most 80% full: 4 MB of slots for 200,000 addresses, not 8
		size *= 2
	}
	t.slots = make([]addrSlot, size)
	total := 0
	for _, k := range keys {
		total += len(k)
	}
	t.keys = make([]byte, 0, total)
	for i, k := range keys {
		if k == "" || uint64(len(t.keys))+uint64(len(k)) > math.MaxUint32 {
			continue // an empty key is never looked up (Resolve needs an @); 4 GB of keys cannot be
		}
		h := maphash.String(t.seed, k)
		tag, mask := uint32(h>>32), uint64(size-1)
		for j := h & mask; ; j = (j + 1) & mask {
			sl := &t.slots[j]
			if sl.n == 0 {
				*sl = addrSlot{tag: tag, id: ids[i], off: uint32(len(t.keys)), n: uint32(len(k))}
				t.keys = append(t.keys, k...)
				break
			}
			if sl.tag == tag && string(t.keys[sl.off:sl.off+sl.n]) == k {
				sl.id = ids[i] // as a map: the last one wins
				break
			}
		}
	}
	return t
}

func (t *addrTable) get(k string) (int32, bool) {
	if len(t.slots) == 0 || k == "" {
		return 0, false
	}
	h := maphash.String(t.seed, k)
	tag, mask := uint32(h>>32), uint64(len(t.slots)-1)
	for j := h & mask; ; j = (j + 1) & mask {
		sl := &t.slots[j]
		if sl.n == 0 {
			return 0, false
		}
		if sl.tag == tag && int(sl.n) == len(k) && string(t.keys[sl.off:sl.off+sl.n]) == k {
			return sl.id, true
		}
	}
}

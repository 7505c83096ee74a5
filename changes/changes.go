// Package changes owns one server's runtime changes (SPEC O1): connector
// costs and states (R9, R10; outbound connectors included, with their
// source servers' smarthost health), server maintenance (R6b, R10), the store
// minimum age (R6), stores and replicas added while running, and folders
// renamed or deleted and their permissions (R17) changed while running
// (issue 12). It turns
// an operator's change into a gossip record, publishes it through the
// gossip member (or applies it locally, with a local clock, on a server
// without listen.gossip), and applies every winning record to the server's
// directory and link-state table. It also feeds memberlist's failure
// detection into link state.
//
// Neighbours: gossip carries the records between servers and never looks
// inside them; directory and linkstate hold the state the records change;
// node wires a Manager into a server and the admin API calls it through
// node.Operator; a config reload rebuilds the state with Reapply.
package changes

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/gossip"
	"pfrouter/linkstate"
	"pfrouter/permissions"
)

// Record values, one per gossip kind. A connector record carries its whole
// runtime state (cost and up), since only the newest record per connector
// survives: a cost change must not forget an earlier state change.
type connectorValue struct {
	Cost int    `json:"cost"`
	Up   bool   `json:"up"`
	By   string `json:"by,omitempty"`
}

type serverValue struct {
	Down bool   `json:"down"`
	By   string `json:"by,omitempty"`
}

type minAgeValue struct {
	StoreMinAge string `json:"store_min_age"`
	By          string `json:"by,omitempty"`
}

type storeValue struct {
	Server    string `json:"server"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Hierarchy string `json:"hierarchy,omitempty"`
	By        string `json:"by,omitempty"`
}

type storeReadyValue struct {
	Ready bool   `json:"ready"`
	By    string `json:"by,omitempty"`
}

// outboundHealthValue is a source server's verdict on its outbound
// connector's smarthost: down after failure_threshold connection failures,
// up again once a probe gets through.
type outboundHealthValue struct {
	Down   bool   `json:"down"`
	Reason string `json:"reason,omitempty"`
}

type replicaValue struct {
	Hierarchy string `json:"hierarchy"`
	Folder    string `json:"folder"`
	// ID is the folder's identity, so the replica lands on it whatever
	// renames reach a server first (empty in records of older servers).
	ID    string `json:"id,omitempty"`
	Store string `json:"store"`
	By    string `json:"by,omitempty"`
}

type folderValue struct {
	Hierarchy string            `json:"hierarchy"`
	Paths     map[string]string `json:"paths"` // folder identity -> new path
	By        string            `json:"by,omitempty"`
}

type permissionValue struct {
	Hierarchy string `json:"hierarchy"`
	ID        string `json:"id"` // folder identity
	Principal string `json:"principal"`
	Role      string `json:"role,omitempty"` // "": the principal's entry removed
	By        string `json:"by,omitempty"`
}

type folderDeletedValue struct {
	Hierarchy string   `json:"hierarchy"`
	IDs       []string `json:"ids"`
	By        string   `json:"by,omitempty"`
}

// Options configure a Manager.
type Options struct {
	// Server is this server's name (the origin of local records).
	Server    string
	Directory *directory.Directory
	LinkState *linkstate.Table
	Logger    *slog.Logger
	// SetMinAge applies a store_min_age record to the live server.
	SetMinAge func(time.Duration)
	// Changed is called after a record or a member change was applied:
	// queued messages waiting for a route are routed again now, not at
	// their next retry (R10).
	Changed func()
}

// Manager applies and publishes one server's runtime changes. It is the
// gossip.Applier of the server's gossip member.
type Manager struct {
	o   Options
	log *slog.Logger

	// applyMu orders record applications against a reload's swap, so a
	// change arriving during a reload is not lost.
	applyMu sync.Mutex

	gossipMu sync.RWMutex
	g        *gossip.Node

	// Without gossip: local records and clock.
	localMu    sync.Mutex
	localClock uint64
	localRecs  map[string]gossip.Record
}

// New returns a Manager that applies changes locally until SetGossip.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SetMinAge == nil {
		o.SetMinAge = func(time.Duration) {}
	}
	if o.Changed == nil {
		o.Changed = func() {}
	}
	return &Manager{o: o, log: o.Logger}
}

// SetGossip makes g carry the changes from now on. gossip.Start re-applies
// the persisted records through Apply before it returns, so call SetGossip
// with its result.
func (m *Manager) SetGossip(g *gossip.Node) {
	m.gossipMu.Lock()
	m.g = g
	m.gossipMu.Unlock()
}

func (m *Manager) gossip() *gossip.Node {
	m.gossipMu.RLock()
	defer m.gossipMu.RUnlock()
	return m.g
}

// SetConnector publishes a connector's cost and state (R9, R10).
func (m *Manager) SetConnector(name string, cost int, up bool, by string) error {
	return m.publish(gossip.KindConnector, name, connectorValue{Cost: cost, Up: up, By: by})
}

// SetOutboundHealth publishes whether this server, a source server of the
// outbound connector, reaches its smarthost: the connector's hop-health
// cause on every server, so none of them routes outside mail to a
// connector whose smarthost does not answer.
func (m *Manager) SetOutboundHealth(connector string, down bool, reason string) error {
	return m.publish(gossip.KindOutboundHealth, connector, outboundHealthValue{Down: down, Reason: reason})
}

// SetServerMaintenance publishes a server's maintenance state (R6b, R10).
func (m *Manager) SetServerMaintenance(server string, down bool, by string) error {
	return m.publish(gossip.KindServer, server, serverValue{Down: down, By: by})
}

// SetStoreMinAge publishes store_min_age (R6).
func (m *Manager) SetStoreMinAge(d time.Duration, by string) error {
	return m.publish(gossip.KindStoreMinAge, "", minAgeValue{StoreMinAge: d.String(), By: by})
}

// AddStore publishes a new store; its created time is the record's time,
// the same on every server (R6).
func (m *Manager) AddStore(server, name, kind, hierarchy, by string) error {
	return m.publish(gossip.KindStore, name, storeValue{Server: server, Name: name, Kind: kind, Hierarchy: hierarchy, By: by})
}

// SetStoreReady publishes that a public store added at run time holds the
// whole hierarchy now: step 1 may choose it (issue 12).
func (m *Manager) SetStoreReady(store, by string) error {
	return m.publish(gossip.KindStoreReady, store, storeReadyValue{Ready: true, By: by})
}

// AddReplica publishes a new replica of a folder in a public store.
func (m *Manager) AddReplica(hierarchy, folder, store, by string) error {
	key := directory.FolderKey(hierarchy, folder) + "|" + store
	v := replicaValue{Hierarchy: hierarchy, Folder: folder, Store: store, By: by}
	if f := m.o.Directory.Snapshot().Folder(directory.FolderKey(hierarchy, folder)); f != nil {
		v.ID = f.ID
	}
	return m.publish(gossip.KindReplica, key, v)
}

// RenameFolder publishes a folder's new path; the folders below it move
// with it (issue 12: hierarchy replication). The caller checked that the
// folder exists and the new path is free.
func (m *Manager) RenameFolder(hierarchy, path, to, by string) error {
	snap := m.o.Directory.Snapshot()
	sub := snap.Subtree(hierarchy, path)
	if len(sub) == 0 {
		return fmt.Errorf("folder %s is not in hierarchy %s", path, hierarchy)
	}
	v := folderValue{Hierarchy: hierarchy, Paths: map[string]string{}, By: by}
	for _, f := range sub {
		v.Paths[f.ID] = to + strings.TrimPrefix(f.Path, path)
	}
	return m.publish(gossip.KindFolder, sub[0].ID, v)
}

// DeleteFolder publishes that a folder and the folders below it are gone,
// with their content on every replica.
func (m *Manager) DeleteFolder(hierarchy, path, by string) error {
	snap := m.o.Directory.Snapshot()
	sub := snap.Subtree(hierarchy, path)
	if len(sub) == 0 {
		return fmt.Errorf("folder %s is not in hierarchy %s", path, hierarchy)
	}
	v := folderDeletedValue{Hierarchy: hierarchy, By: by}
	for _, f := range sub {
		v.IDs = append(v.IDs, f.ID)
	}
	return m.publish(gossip.KindFolderDeleted, sub[0].ID, v)
}

// SetFolderPermission publishes a folder's new role for principal (role
// "" removes the principal's entry) (issue 12: hierarchy replication). The
// record names the folder by identity and the principal in lower case, so
// one record per folder and principal is in force everywhere: the newest.
// The caller checked the folder, the principal and the role.
func (m *Manager) SetFolderPermission(hierarchy, path, principal, role, by string) error {
	f := m.o.Directory.Snapshot().Folder(directory.FolderKey(hierarchy, path))
	if f == nil {
		return fmt.Errorf("folder %s is not in hierarchy %s", path, hierarchy)
	}
	v := permissionValue{Hierarchy: hierarchy, ID: f.ID, Principal: principal, Role: role, By: by}
	return m.publish(gossip.KindFolderPermission, f.ID+"|"+strings.ToLower(principal), v)
}

// publish makes a change everywhere: through gossip when it runs, else
// locally with a local clock. The change is applied here before publish
// returns, so the next routing decision on this server uses it.
func (m *Manager) publish(kind, key string, value any) error {
	if g := m.gossip(); g != nil {
		_, err := g.Publish(kind, key, value)
		return err
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	m.localMu.Lock()
	defer m.localMu.Unlock()
	m.localClock++
	r := gossip.Record{Kind: kind, Key: key, Origin: m.o.Server, Version: m.localClock, At: time.Now().UTC(), Value: raw}
	if err := m.Apply(r); err != nil {
		m.localClock--
		return err
	}
	if m.localRecs == nil {
		m.localRecs = map[string]gossip.Record{}
	}
	m.localRecs[kind+"\x00"+key] = r
	return nil
}

// Records are the winning runtime changes, oldest first (a store before a
// replica that names it).
func (m *Manager) Records() []gossip.Record {
	var out []gossip.Record
	if g := m.gossip(); g != nil {
		out = g.Records()
	} else {
		m.localMu.Lock()
		for _, r := range m.localRecs {
			out = append(out, r)
		}
		m.localMu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// Version is the runtime-change version: the gossip version (the highest
// record version this server holds), equal on every server that has
// converged; without gossip, the local clock.
func (m *Manager) Version() uint64 {
	if g := m.gossip(); g != nil {
		return g.Version()
	}
	m.localMu.Lock()
	defer m.localMu.Unlock()
	return m.localClock
}

// Apply is the gossip Applier. Records from a server that is not in the
// organization are ignored (logged): link-state data is accepted only from
// servers of the organization (R13b).
func (m *Manager) Apply(r gossip.Record) error {
	if m.o.Directory.Snapshot().Server(r.Origin) == nil {
		m.log.Warn("gossip: record from a server outside the organization ignored", "kind", r.Kind, "key", r.Key, "origin", r.Origin)
		return nil
	}
	m.applyMu.Lock()
	err := m.applyTo(m.o.Directory, m.o.LinkState, r, true)
	m.applyMu.Unlock()
	if err != nil {
		return err
	}
	m.log.Info("runtime change applied", "kind", r.Kind, "key", r.Key, "origin", r.Origin, "version", r.Version)
	m.o.Changed()
	return nil
}

// Reapply rebuilds runtime state on a fresh directory and link-state table
// built from a reloaded config: every record whose origin is still in the
// organization is applied on top, servers down now stay down (a reload
// does not make a dead server reachable), and swap is called with the
// store_min_age in force (minAge unless a record set it) while no record
// can be applied, so a change arriving during a reload is not lost.
func (m *Manager) Reapply(dir *directory.Directory, ls *linkstate.Table, minAge time.Duration, swap func(minAge time.Duration)) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	for _, r := range m.Records() {
		if dir.Snapshot().Server(r.Origin) == nil {
			continue
		}
		if r.Kind == gossip.KindStoreMinAge {
			if d, err := parseMinAge(r); err == nil {
				minAge = d
			}
			continue
		}
		if err := m.applyTo(dir, ls, r, false); err != nil {
			// A runtime change the new config contradicts (a connector
			// removed, say): the config wins, the record stays for peers.
			m.log.Warn("config reload: runtime change no longer applies", "kind", r.Kind, "key", r.Key, "origin", r.Origin, "err", err)
		}
	}
	// Causes a config file does not hold (failure detection, failed hops)
	// carry over: a reload does not make a dead server reachable.
	// Maintenance came back with the records above; config causes are the
	// new file's.
	for _, s := range m.o.LinkState.Servers() {
		for _, c := range s.Causes {
			if c == linkstate.CauseHopHealth || c == linkstate.CauseMemberDeath {
				ls.SetServerCause(s.Name, c, true)
			}
		}
	}
	swap(minAge)
}

func parseMinAge(r gossip.Record) (time.Duration, error) {
	var v minAgeValue
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return 0, fmt.Errorf("store_min_age: bad value: %w", err)
	}
	d, err := time.ParseDuration(v.StoreMinAge)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("store_min_age %q is not a duration >= 0", v.StoreMinAge)
	}
	return d, nil
}

// applyTo applies one record to a directory and a link-state table: the
// live ones, or (reload) fresh ones about to be swapped in. live says
// whether server-level tunables (store_min_age) change too.
func (m *Manager) applyTo(dir *directory.Directory, ls *linkstate.Table, r gossip.Record, live bool) error {
	by := r.Origin
	switch r.Kind {
	case gossip.KindConnector:
		var v connectorValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("connector %q: bad value: %w", r.Key, err)
		}
		if v.By != "" {
			by = v.By + " via " + r.Origin
		}
		if v.Cost != 0 {
			if _, err := ls.SetCost(r.Key, v.Cost, by, r.At); err != nil {
				return err
			}
		}
		_, err := ls.SetUp(r.Key, v.Up, by, r.At)
		return err
	case gossip.KindOutboundHealth:
		var v outboundHealthValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("outbound_health %q: bad value: %w", r.Key, err)
		}
		c, ok := ls.Connector(r.Key)
		if !ok || !c.Outbound {
			return fmt.Errorf("outbound connector %q: %w", r.Key, linkstate.ErrUnknown)
		}
		// Only a source server talks to the smarthost, so only its verdict
		// counts.
		if !slices.Contains(c.Sources, r.Origin) {
			m.log.Warn("gossip: outbound connector health from a server that is not its source ignored", "connector", r.Key, "origin", r.Origin)
			return nil
		}
		_, err := ls.SetConnectorCause(r.Key, linkstate.CauseHopHealth, v.Down, "hop-health via "+r.Origin, r.At)
		return err
	case gossip.KindServer:
		var v serverValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("server %q: bad value: %w", r.Key, err)
		}
		// The operator's cause only: failure detection and hop health
		// keep theirs.
		_, err := ls.SetServerCause(r.Key, linkstate.CauseMaintenance, v.Down)
		return err
	case gossip.KindStoreMinAge:
		d, err := parseMinAge(r)
		if err != nil {
			return err
		}
		if live {
			m.o.SetMinAge(d)
		}
		return nil
	case gossip.KindStore:
		var v storeValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("store %q: bad value: %w", r.Key, err)
		}
		if old := dir.Snapshot().Store(v.Name); old != nil {
			// Re-applied after a reload, or the same record twice: the
			// store is there already. Anything else is a real conflict.
			if old.Server == v.Server && old.Kind == v.Kind {
				return nil
			}
			return fmt.Errorf("store %q already exists on server %s", v.Name, old.Server)
		}
		// created is the record's time, so every server agrees on the
		// store's age (R6). A public store on a server that replicates
		// waits for its hierarchy (a store_ready record) before step 1
		// may choose it; without replication nothing would ever clear it.
		pending := false
		if srv := dir.Snapshot().Server(v.Server); srv != nil && v.Kind == config.StorePublic {
			pending = srv.Listen.Replication != ""
		}
		_, err := dir.AddStore(directory.Store{Name: v.Name, Kind: v.Kind, Server: v.Server, Hierarchy: v.Hierarchy, Created: r.At,
			Synced: true, HierarchyPending: pending})
		return err
	case gossip.KindStoreReady:
		var v storeReadyValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("store_ready %q: bad value: %w", r.Key, err)
		}
		return dir.SetHierarchyPending(r.Key, !v.Ready)
	case gossip.KindReplica:
		var v replicaValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("replica %q: bad value: %w", r.Key, err)
		}
		if v.ID != "" {
			f := dir.Snapshot().FolderByID(v.ID)
			if f == nil {
				return nil // the folder was deleted: delete wins
			}
			v.Hierarchy, v.Folder = f.Hierarchy, f.Path
		}
		return dir.AddReplica(v.Hierarchy, v.Folder, v.Store)
	case gossip.KindFolder:
		var v folderValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("folder %q: bad value: %w", r.Key, err)
		}
		return dir.RenameFolders(v.Paths, directory.Rev{Version: r.Version, Origin: r.Origin})
	case gossip.KindFolderPermission:
		var v permissionValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("folder_permission %q: bad value: %w", r.Key, err)
		}
		if v.ID == "" || v.Principal == "" {
			return fmt.Errorf("folder_permission %q: folder identity and principal required", r.Key)
		}
		if v.Role != "" {
			if _, err := permissions.ParseRole(v.Role); err != nil {
				return fmt.Errorf("folder_permission %q: %w", r.Key, err)
			}
		}
		return dir.SetFolderPermission(v.ID, v.Principal, v.Role, directory.Rev{Version: r.Version, Origin: r.Origin})
	case gossip.KindFolderDeleted:
		var v folderDeletedValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("folder_deleted %q: bad value: %w", r.Key, err)
		}
		return dir.DeleteFolders(v.IDs)
	}
	m.log.Warn("gossip: record of an unknown kind ignored (a newer server?)", "kind", r.Kind, "key", r.Key, "origin", r.Origin)
	return nil
}

// MemberChanged feeds memberlist's failure detection into link state: a
// dead server is unreachable for routing, and a connector whose
// bridgeheads on one side are all dead carries nothing (R10); linkstate
// works that out from the server states. Only the member-death cause is
// set or cleared: a server in maintenance stays down when it comes back
// alive.
func (m *Manager) MemberChanged(server string, alive bool) {
	if _, err := m.o.LinkState.SetServerCause(server, linkstate.CauseMemberDeath, !alive); err != nil {
		m.log.Warn("gossip: member change for a server not in link state", "member", server, "alive", alive, "err", err)
		return
	}
	m.log.Info("link state: server reachability changed by failure detection", "member", server, "alive", alive,
		"down", m.o.LinkState.Graph().ServerDown(server))
	m.o.Changed()
}

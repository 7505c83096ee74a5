// Package gossip disseminates pfrouter's runtime changes between the
// servers of one organization: connector costs and states, server
// maintenance, the store minimum age, stores and replicas added at runtime
// (SPEC O1, R6, R9, R10, R13b). Servers form a hashicorp/memberlist cluster
// encrypted with a key derived from the organization secret, so only
// servers of the organization take part (R13b).
//
// Each change is a Record keyed by (Kind, Key) and versioned with a Lamport
// clock; the highest version wins everywhere (see docs/gossip.md). New
// records go out as memberlist broadcasts; push/pull anti-entropy
// (LocalState/MergeRemoteState) lets a server that was down catch up.
// Winning records are persisted in the server's data directory and
// re-applied on start. Package changes owns the Applier that turns a
// record into a linkstate/directory/tunables change and publishes the
// operator's changes; node wires the two together.
package gossip

import (
	"encoding/json"
	"time"
)

// Record kinds.
const (
	KindConnector   = "connector"     // Key: connector name; Value: {"cost":N} and/or {"up":bool}
	KindServer      = "server"        // Key: server name; Value: {"down":bool} (maintenance)
	KindStoreMinAge = "store_min_age" // Key: ""; Value: {"store_min_age":"24h"} (tunable)
	KindStore       = "store"         // Key: store name; Value: the added store
	KindReplica     = "replica"       // Key: folder key + "|" + store; Value: the added replica
	KindStoreReady  = "store_ready"   // Key: store name; Value: {"ready":true}: its hierarchy is replicated (issue 12)
	// KindFolder renames folders: Key: the renamed folder's identity
	// (directory.Folder.ID); Value: {"paths":{identity:new path}} for it
	// and every folder below it.
	KindFolder = "folder"
	// KindFolderPermission sets one principal's role on a folder (R17):
	// Key: folder identity + "|" + principal in lower case; Value:
	// {"id":identity,"principal":...,"role":...}, role "" removes the
	// principal's entry. The newest record per folder and principal wins.
	KindFolderPermission = "folder_permission"
	// KindFolderDeleted deletes folders for good: Key: the deleted
	// folder's identity; Value: {"ids":[...]} it and every folder below it.
	// A kind of its own, so no later rename record can replace it.
	KindFolderDeleted = "folder_deleted"
	// KindOutboundHealth: Key: outbound connector name; Value:
	// {"down":bool,"reason":...}: whether its source server reaches the
	// smarthost (the hop-health cause, set and cleared by that server only).
	KindOutboundHealth = "outbound_health"
)

// Record is one replicated change. Value is kind-specific JSON, opaque to
// this package: the Applier interprets it.
type Record struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Origin  string          `json:"origin"`  // server that made the change
	Version uint64          `json:"version"` // Lamport clock at the origin
	At      time.Time       `json:"at"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// Applier applies a winning record to the server's state. Apply is called
// with the gossip node's merge lock held, one record at a time in merge
// order: it must not call Publish (that would deadlock) and should be quick.
type Applier interface {
	Apply(r Record) error
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(r Record) error

// Apply calls f(r).
func (f ApplierFunc) Apply(r Record) error { return f(r) }

// Member is a server of the cluster as this node sees it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Alive bool   `json:"alive"`
}

type recKey struct{ kind, key string }

func (r Record) id() recKey { return recKey{r.Kind, r.Key} }

// beats reports whether r replaces old under the merge rule: the higher
// Version wins; equal versions break on the greater Origin name; anything
// else (older, or the same record again) changes nothing.
func (r Record) beats(old Record) bool {
	if r.Version != old.Version {
		return r.Version > old.Version
	}
	return r.Origin > old.Origin
}

func (r Record) valid() bool {
	return r.Kind != "" && r.Origin != "" && r.Version > 0 && len(r.Kind) <= 64 && len(r.Key) <= 1024
}

// Package admin is pfrouter's live operations surface: an authenticated
// HTTP JSON API on each server's listen.admin (handler.go), a typed Go
// client for it (client.go) and the `pfrouter admin` command tree built on
// the client (cli*.go). It changes nothing itself: the node package
// implements Ops, and its changes travel to the other servers through the
// gossip package (SPEC O1, O2, O5; R6, R9, R10, R13b).
package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"pfrouter/linkstate"
	"pfrouter/routing"
)

// Ops is what the admin API needs from a running server. Errors wrapping
// ErrNotFound become 404, errors wrapping ErrInvalid or a *FieldError
// become 400, anything else 500.
type Ops interface {
	StoreMinAge() time.Duration
	SetStoreMinAge(ctx context.Context, d time.Duration, by string) error
	LinkState() LinkState
	SetConnectorCost(ctx context.Context, name string, cost int, by string) error
	SetConnectorState(ctx context.Context, name string, up bool, by string) error
	SetServerMaintenance(ctx context.Context, server string, down bool, by string) error
	AddStore(ctx context.Context, server, name, kind, hierarchy string) error
	AddReplica(ctx context.Context, hierarchy, path, store string) error
	// RenameFolder and DeleteFolder change a public folder (and the
	// folders below it) everywhere, with its content in every replica.
	RenameFolder(ctx context.Context, hierarchy, path, to string) error
	DeleteFolder(ctx context.Context, hierarchy, path string) error
	// SetFolderPermission gives principal (a user, Anonymous or Default)
	// role on a public folder everywhere (R17); role "" removes the
	// principal's entry.
	SetFolderPermission(ctx context.Context, hierarchy, path, principal, role string) error
	// Route explains the decision for rcpt as made on server at ("" means
	// this server) at time now (SPEC O2).
	Route(ctx context.Context, at, rcpt string, now time.Time) (routing.Decision, error)
	QueueList(ctx context.Context) ([]QueueItem, error)
	QueueShow(ctx context.Context, id string) (QueueItem, error)
	// QueueRetry retries one message now; "" retries all (flush).
	QueueRetry(ctx context.Context, id string) error
	QueueDelete(ctx context.Context, id string) error
	// Reload re-reads the configuration; a bad one is refused with its
	// errors and the old one keeps running (O5).
	Reload(ctx context.Context) error
}

// LinkState is a server's current view of the topology.
type LinkState struct {
	// Version is the runtime-change (gossip) version: the newest change
	// this server holds, equal on servers that have converged.
	Version uint64 `json:"version"`
	// LinkStateVersion is the version of this server's link-state table,
	// the one route explanations cite ("link state vN"): it also counts
	// local changes such as failure detection, so it differs between
	// servers.
	LinkStateVersion uint64                `json:"linkstate_version"`
	Connectors       []linkstate.Connector `json:"connectors"`
	Servers          []linkstate.Server    `json:"servers"`
}

// QueueItem is one queued message.
type QueueItem struct {
	ID         string           `json:"id"`
	MessageID  string           `json:"message_id,omitempty"`
	From       string           `json:"from"`
	Recipients []QueueRecipient `json:"recipients"`
	Arrived    time.Time        `json:"arrived"`
	Size       int64            `json:"size"`
}

// QueueRecipient is one recipient's delivery state.
type QueueRecipient struct {
	Addr        string    `json:"addr"`
	State       string    `json:"state"` // e.g. pending, deferred, delivered, failed
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Reason      string    `json:"reason,omitempty"`
	NextHop     string    `json:"next_hop,omitempty"` // server it was last routed towards
}

// ErrNotFound is wrapped by Ops errors about an unknown object (404).
var ErrNotFound = errors.New("not found")

// ErrInvalid is wrapped by Ops errors about a refused value (400).
var ErrInvalid = errors.New("invalid")

// FieldError is a 400 naming the request field at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// StoreRequest is the body of POST /v1/stores.
type StoreRequest struct {
	Server    string `json:"server"`
	Name      string `json:"name"`
	Kind      string `json:"kind,omitempty"` // public (default) or mailbox
	Hierarchy string `json:"hierarchy,omitempty"`
}

// ReplicaRequest is the body of POST /v1/replicas.
type ReplicaRequest struct {
	Hierarchy string `json:"hierarchy"`
	Folder    string `json:"folder"` // folder path in the hierarchy
	Store     string `json:"store"`
}

// FolderRequest is the body of POST /v1/folders/rename (To set) and
// POST /v1/folders/delete.
type FolderRequest struct {
	Hierarchy string `json:"hierarchy"`
	Folder    string `json:"folder"`       // folder path in the hierarchy
	To        string `json:"to,omitempty"` // rename: the new path
}

// PermissionRequest is the body of POST /v1/folders/permission (Role
// set) and POST /v1/folders/permission/remove.
type PermissionRequest struct {
	Hierarchy string `json:"hierarchy"`
	Folder    string `json:"folder"`    // folder path in the hierarchy
	Principal string `json:"principal"` // a user name, Anonymous or Default
	Role      string `json:"role,omitempty"`
}

// MinAge is the body of GET/PUT /v1/store-min-age.
type MinAge struct {
	StoreMinAge string  `json:"store_min_age"` // Go duration, e.g. "24h"
	Seconds     float64 `json:"seconds,omitempty"`
}

// Maintenance is the body of PUT /v1/servers/{name}/maintenance.
type Maintenance struct {
	Maintenance *bool `json:"maintenance"`
}

// ConnectorState is the body of PUT /v1/connectors/{name}/state.
type ConnectorState struct {
	Up *bool `json:"up"`
}

// OK is the reply of calls that return nothing else.
type OK struct {
	OK bool `json:"ok"`
}

// formatDuration prints 48h rather than 48h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

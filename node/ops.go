package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pfrouter/admin"
	"pfrouter/config"
	"pfrouter/console"
	"pfrouter/directory"
	"pfrouter/gossip"
	"pfrouter/internal/tlssniff"
	"pfrouter/linkstate"
	"pfrouter/permissions"
	"pfrouter/qmgr"
	"pfrouter/routing"
	"pfrouter/servercred"
)

// This file brings up a server's live operations surface (SPEC O1, O2,
// O5): the gossip member that spreads runtime changes (gossip.go), the
// admin HTTP API on listen.admin, and Operator, the admin.Ops
// implementation the API calls. Reload is in reload.go.

// AdminHandlers are extra admin API endpoints by pattern (e.g.
// "/v1/tracking", "/metrics"); they need the same bearer token.
type AdminHandlers = map[string]http.Handler

// opsState is the node's runtime-operations state. It is a value inside
// Node so that readers started before startOps (the queue manager calls
// Params) never race on a pointer.
type opsState struct {
	ctx    context.Context
	gossip *gossip.Node

	// reloadMu makes reloads one at a time.
	reloadMu sync.Mutex
	// routing is the routing section in force after a reload (nil: the
	// startup config's).
	routing atomic.Pointer[config.Routing]
	// org is the config in force after a reload (nil: n.Org).
	org atomic.Pointer[config.Org]

	// peerHTTP are the clients for peers' admin APIs (peerAdminHTTP).
	peerMu   sync.Mutex
	peerHTTP map[string]*http.Client
}

// startOps starts gossip (when listen.gossip is set) and the admin API
// (when adminL is open). Node.Start calls it once the queue manager runs,
// so persisted runtime changes re-applied now reroute queued mail.
func (n *Node) startOps(ctx context.Context, adminL net.Listener, srv *config.Server, userTLS *tls.Config) error {
	n.ops.ctx = context.WithoutCancel(ctx)
	if srv.Listen.Gossip != "" {
		if err := n.startGossip(srv); err != nil {
			return err
		}
		g := n.ops.gossip
		n.closers = append(n.closers, func(context.Context) error { return g.Close() })
	}
	if adminL == nil {
		return nil
	}
	token, err := admin.ResolveToken(n.Org, n.DataDir)
	if err != nil {
		return fmt.Errorf("server %s: %w", n.Name, err)
	}
	if n.AdminExtra == nil {
		n.AdminExtra = AdminHandlers{}
	}
	con, err := n.newConsole()
	if err != nil {
		return fmt.Errorf("server %s: %w", n.Name, err)
	}
	// The console logs in with its own form and session cookie; every other
	// path is the bearer-token API.
	mux := http.NewServeMux()
	mux.Handle("/", admin.NewHandler(n.Operator(), token, n.AdminExtra, n.Log, admin.WithPeers(n.adminPeer)))
	mux.Handle(console.Prefix, con)
	hs := adminHTTPServer(mux)
	// Refused handshakes (a foreign certificate, a scanner) are logged as
	// warnings of this server, not on the process's bare log.
	hs.ErrorLog = slog.NewLogLogger(n.Log.With("listener", "admin").Handler(), slog.LevelWarn)
	// One port, two kinds of callers: the operator's CLI and browser in
	// plain HTTP (or HTTPS with the user certificate), peer servers in TLS
	// with their organization certificates (servercred), never in clear.
	sniffed := tlssniff.New(adminL, n.Identity.WrapServerTLS(userTLS), tlssniff.Options{})
	n.serve("admin", func() error {
		if err := hs.Serve(sniffed); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	n.closers = append(n.closers, func(ctx context.Context) error {
		n.ops.peerMu.Lock()
		for _, hc := range n.ops.peerHTTP {
			hc.CloseIdleConnections()
		}
		n.ops.peerMu.Unlock()
		return hs.Shutdown(ctx)
	})
	n.Log.Info("admin API listening", "addr", adminL.Addr().String(), "gossip", n.gossipAddr())
	return nil
}

// adminPeer names the peer server an admin request comes from: a TLS
// client certificate of the organization (servercred.PeerServer) naming a
// server the directory lists. admin.WithPeers lets such a server read.
func (n *Node) adminPeer(r *http.Request) (string, bool) {
	if r.TLS == nil {
		return "", false
	}
	name, ok := servercred.PeerServer(*r.TLS)
	if !ok || n.Directory.Snapshot().Server(name) == nil {
		return "", false
	}
	return name, true
}

// peerAdminHTTP is the client this server calls peer's admin API with:
// TLS presenting this server's organization certificate and accepting only
// peer's (servercred.ClientTLS). Clients are kept per peer so connections
// are reused.
func (n *Node) peerAdminHTTP(peer string) *http.Client {
	n.ops.peerMu.Lock()
	defer n.ops.peerMu.Unlock()
	if hc := n.ops.peerHTTP[peer]; hc != nil {
		return hc
	}
	if n.ops.peerHTTP == nil {
		n.ops.peerHTTP = map[string]*http.Client{}
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: n.Identity.ClientTLS(peer), TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 15 * time.Second}}
	n.ops.peerHTTP[peer] = hc
	return hc
}

// newConsole builds the web console on the admin listener. It reaches
// this server's admin API in plain HTTP with the operator's token, as the
// CLI does, and every other server's over TLS with this server's
// organization certificate (peerAdminHTTP), which lets it read there
// without a token.
func (n *Node) newConsole() (*console.Console, error) {
	return console.New(console.Config{
		Self: n.Name,
		Servers: func() []console.Server {
			org := n.CurrentOrg()
			out := make([]console.Server, 0, len(org.Servers))
			for _, s := range org.Servers {
				cs := console.Server{Name: s.Name, RoutingGroup: s.RoutingGroup}
				switch {
				case s.Listen.Admin == "":
				case s.Name == n.Name:
					cs.AdminURL = "http://" + s.Listen.Admin
				default:
					cs.AdminURL, cs.HTTP = "https://"+s.Listen.Admin, n.peerAdminHTTP(s.Name)
				}
				out = append(out, cs)
			}
			return out
		},
		PeerToken: n.peerToken,
		Directory: n.Directory.Snapshot,
		Logger:    n.Log,
	})
}

// adminHTTPServer serves the admin API and console. Every call is a short
// request/response (no streaming, no long polls; a cluster-wide trace
// lookup is the longest): a client that stalls or idles is cut off instead
// of holding a connection for ever.
func adminHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// peerToken reads another server's generated admin token when its data
// directory is on this machine (the servers of one `pfrouter serve`), so
// the console reaches every server as `pfrouter trace` does. With a
// configured token every server shares it, and a token never generated is
// not created here.
func (n *Node) peerToken(server string) (string, bool) {
	org := n.CurrentOrg()
	self, peer := org.ServerByName(n.Name), org.ServerByName(server)
	if peer == nil || self == nil || org.Admin.Token != "" || org.Admin.TokenFile != "" {
		return "", false
	}
	base := ""
	if self.DataDir == "" {
		base = filepath.Dir(n.DataDir)
	} else if peer.DataDir == "" {
		return "", false // the peer's base directory is not known here
	}
	b, err := os.ReadFile(filepath.Join(org.DataDir(peer, base), admin.TokenFile))
	if err != nil {
		return "", false
	}
	tok := strings.TrimSpace(string(b))
	return tok, tok != ""
}

func (n *Node) gossipAddr() string {
	if g := n.ops.gossip; g != nil {
		return g.Addr()
	}
	return ""
}

// Gossip is the node's gossip member, nil without listen.gossip.
func (n *Node) Gossip() *gossip.Node { return n.ops.gossip }

// routingConfig is the routing section in force (reloadable).
func (n *Node) routingConfig() config.Routing {
	if r := n.ops.routing.Load(); r != nil {
		return *r
	}
	return n.Org.Routing
}

// CurrentOrg is the configuration in force: the startup one, or the last
// one a reload applied.
func (n *Node) CurrentOrg() *config.Org {
	if o := n.ops.org.Load(); o != nil {
		return o
	}
	return n.Org
}

// Operator is the admin.Ops of a node: what the admin API calls. Changes go
// through gossip so every server agrees (O1).
type Operator struct{ n *Node }

var _ admin.Ops = (*Operator)(nil)

// Operator returns the node's admin.Ops.
func (n *Node) Operator() *Operator { return &Operator{n: n} }

// StoreMinAge is store_min_age in force (R6).
func (o *Operator) StoreMinAge() time.Duration { return o.n.Params().MinAge }

// SetStoreMinAge changes store_min_age on every server (R6, O1).
func (o *Operator) SetStoreMinAge(ctx context.Context, d time.Duration, by string) error {
	if d < 0 {
		return &admin.FieldError{Field: "store_min_age", Msg: "must be >= 0"}
	}
	return o.n.changes.SetStoreMinAge(d, by)
}

// LinkState is this server's view: connectors, servers, the runtime-change
// version (equal on converged servers) and the link-state table's version
// (the one route explanations cite).
func (o *Operator) LinkState() admin.LinkState {
	return admin.LinkState{Version: o.n.changes.Version(), LinkStateVersion: o.n.LinkState.Version(),
		Connectors: o.n.LinkState.Connectors(), Servers: o.n.LinkState.Servers()}
}

func (o *Operator) connector(name string) (linkstate.Connector, error) {
	c, ok := o.n.LinkState.Connector(name)
	if !ok {
		return c, fmt.Errorf("connector %q: %w", name, admin.ErrNotFound)
	}
	return c, nil
}

// SetConnectorCost changes a connector's cost everywhere (R9, O1).
func (o *Operator) SetConnectorCost(ctx context.Context, name string, cost int, by string) error {
	if cost < 1 || cost > 100 {
		return &admin.FieldError{Field: "cost", Msg: "must be an integer 1–100"}
	}
	c, err := o.connector(name)
	if err != nil {
		return err
	}
	// Up in the record is the operator's state (no maintenance cause): a
	// cause of another writer (the config file) must not travel as the
	// operator's.
	return o.n.changes.SetConnector(name, cost, !c.Causes.Has(linkstate.CauseMaintenance), by)
}

// SetConnectorState marks a connector up or down everywhere (R10, O1).
func (o *Operator) SetConnectorState(ctx context.Context, name string, up bool, by string) error {
	c, err := o.connector(name)
	if err != nil {
		return err
	}
	return o.n.changes.SetConnector(name, c.Cost, up, by)
}

// SetServerMaintenance takes a server out of routing (down) or back (R6b,
// R10).
func (o *Operator) SetServerMaintenance(ctx context.Context, server string, down bool, by string) error {
	if o.n.Directory.Snapshot().Server(server) == nil {
		return fmt.Errorf("server %q: %w", server, admin.ErrNotFound)
	}
	return o.n.changes.SetServerMaintenance(server, down, by)
}

// AddStore adds a store on every server; its created time is the time of
// the change, the same everywhere (R6, O1).
func (o *Operator) AddStore(ctx context.Context, server, name, kind, hierarchy string) error {
	snap := o.n.Directory.Snapshot()
	switch {
	case snap.Server(server) == nil:
		return &admin.FieldError{Field: "server", Msg: fmt.Sprintf("%q is not a server of the organization", server)}
	case snap.Store(name) != nil:
		return &admin.FieldError{Field: "name", Msg: fmt.Sprintf("store %q already exists", name)}
	case kind != config.StorePublic && kind != config.StoreMailbox:
		return &admin.FieldError{Field: "kind", Msg: fmt.Sprintf("%q is not public or mailbox", kind)}
	case kind == config.StorePublic && snap.Hierarchy(hierarchy) == nil:
		return &admin.FieldError{Field: "hierarchy", Msg: fmt.Sprintf("%q is not a hierarchy of the organization", hierarchy)}
	}
	if kind == config.StoreMailbox {
		hierarchy = ""
	}
	return o.n.changes.AddStore(server, name, kind, hierarchy, "")
}

// AddReplica makes a public store hold a replica of a folder everywhere.
func (o *Operator) AddReplica(ctx context.Context, hierarchy, path, store string) error {
	snap := o.n.Directory.Snapshot()
	key := directory.FolderKey(hierarchy, path)
	switch st := snap.Store(store); {
	case snap.Hierarchy(hierarchy) == nil:
		return &admin.FieldError{Field: "hierarchy", Msg: fmt.Sprintf("%q is not a hierarchy of the organization", hierarchy)}
	case snap.Folder(key) == nil:
		return &admin.FieldError{Field: "folder", Msg: fmt.Sprintf("%q is not a folder of hierarchy %q", path, hierarchy)}
	case st == nil:
		return &admin.FieldError{Field: "store", Msg: fmt.Sprintf("%q is not a store of the organization", store)}
	case st.Kind != config.StorePublic || st.Hierarchy != hierarchy:
		return &admin.FieldError{Field: "store", Msg: fmt.Sprintf("store %q does not hold hierarchy %q", store, hierarchy)}
	}
	return o.n.changes.AddReplica(hierarchy, path, store, "")
}

// folderArgs checks that hierarchy and folder name an existing folder.
func (o *Operator) folderArgs(snap *directory.Snapshot, hierarchy, path string) error {
	switch {
	case snap.Hierarchy(hierarchy) == nil:
		return &admin.FieldError{Field: "hierarchy", Msg: fmt.Sprintf("%q is not a hierarchy of the organization", hierarchy)}
	case snap.Folder(directory.FolderKey(hierarchy, path)) == nil:
		return &admin.FieldError{Field: "folder", Msg: fmt.Sprintf("%q is not a folder of hierarchy %q", path, hierarchy)}
	}
	return nil
}

// RenameFolder renames a public folder, with the folders below it, on
// every server and in every replica (issue 12).
func (o *Operator) RenameFolder(ctx context.Context, hierarchy, path, to string) error {
	snap := o.n.Directory.Snapshot()
	if err := o.folderArgs(snap, hierarchy, path); err != nil {
		return err
	}
	if !strings.HasPrefix(to, "/") || strings.HasSuffix(to, "/") || strings.Contains(to, "//") || strings.ContainsRune(to, 0) {
		return &admin.FieldError{Field: "to", Msg: fmt.Sprintf("%q is not a folder path like /Sales/Announcements", to)}
	}
	if to == path || strings.HasPrefix(to, path+"/") {
		return &admin.FieldError{Field: "to", Msg: fmt.Sprintf("%q is %s or below it", to, path)}
	}
	for _, f := range snap.Subtree(hierarchy, path) {
		dst := to + strings.TrimPrefix(f.Path, path)
		if snap.Folder(directory.FolderKey(hierarchy, dst)) != nil {
			return &admin.FieldError{Field: "to", Msg: fmt.Sprintf("folder %q already exists in hierarchy %q", dst, hierarchy)}
		}
	}
	return o.n.changes.RenameFolder(hierarchy, path, to, "")
}

// DeleteFolder deletes a public folder, with the folders below it and
// their content, on every server and in every replica, for good (issue 12).
func (o *Operator) DeleteFolder(ctx context.Context, hierarchy, path string) error {
	if err := o.folderArgs(o.n.Directory.Snapshot(), hierarchy, path); err != nil {
		return err
	}
	return o.n.changes.DeleteFolder(hierarchy, path, "")
}

// SetFolderPermission gives principal role on a public folder (role ""
// removes its entry) on every server (R17, issue 12). Anonymous and
// Default are matched case-insensitively, users by their directory name;
// the role is stored under its canonical name.
func (o *Operator) SetFolderPermission(ctx context.Context, hierarchy, path, principal, role string) error {
	snap := o.n.Directory.Snapshot()
	if err := o.folderArgs(snap, hierarchy, path); err != nil {
		return err
	}
	switch {
	case strings.EqualFold(principal, permissions.Anonymous):
		principal = permissions.Anonymous
	case strings.EqualFold(principal, permissions.Default):
		principal = permissions.Default
	case snap.User(principal) == nil:
		return &admin.FieldError{Field: "principal", Msg: fmt.Sprintf("%q is not Anonymous, Default or a user of the organization", principal)}
	}
	if role != "" {
		r, err := permissions.ParseRole(role)
		if err != nil {
			return &admin.FieldError{Field: "role", Msg: err.Error()}
		}
		role = string(r)
	}
	return o.n.changes.SetFolderPermission(hierarchy, path, principal, role, "")
}

// Route explains the decision for rcpt made at server at ("" is this
// server) on this server's directory and link state (O2).
func (o *Operator) Route(ctx context.Context, at, rcpt string, now time.Time) (routing.Decision, error) {
	n := o.n
	if at == "" {
		at = n.Name
	}
	snap := n.Directory.Snapshot()
	if snap.Server(at) == nil {
		return routing.Decision{}, &admin.FieldError{Field: "at", Msg: fmt.Sprintf("%q is not a server of the organization", at)}
	}
	if !strings.Contains(rcpt, "@") {
		return routing.Decision{}, &admin.FieldError{Field: "to", Msg: fmt.Sprintf("%q is not an address", rcpt)}
	}
	return routing.Decide(snap, n.LinkState.Graph(), n.Params(), routing.Input{At: at, Recipient: rcpt, Now: now}), nil
}

func queueItem(it qmgr.Item) admin.QueueItem {
	out := admin.QueueItem{ID: it.ID, MessageID: it.MessageID, From: it.From, Arrived: it.Arrived, Size: it.Size,
		Recipients: make([]admin.QueueRecipient, 0, len(it.Recipients))}
	for _, r := range it.Recipients {
		out.Recipients = append(out.Recipients, admin.QueueRecipient{Addr: r.Addr, State: r.State, NextAttempt: r.NextAttempt, Reason: r.Reason, NextHop: r.NextHop})
	}
	return out
}

func queueErr(err error) error {
	if errors.Is(err, qmgr.ErrNotQueued) {
		return fmt.Errorf("%w: %w", admin.ErrNotFound, err)
	}
	return err
}

// QueueList lists the queued messages.
func (o *Operator) QueueList(ctx context.Context) ([]admin.QueueItem, error) {
	items := o.n.Qmgr.List()
	out := make([]admin.QueueItem, 0, len(items))
	for _, it := range items {
		out = append(out, queueItem(it))
	}
	return out, nil
}

// QueueShow returns one queued message.
func (o *Operator) QueueShow(ctx context.Context, id string) (admin.QueueItem, error) {
	it, err := o.n.Qmgr.Show(id)
	if err != nil {
		return admin.QueueItem{}, queueErr(err)
	}
	return queueItem(it), nil
}

// QueueRetry retries one message now, or all of them for "".
func (o *Operator) QueueRetry(ctx context.Context, id string) error {
	if id == "" {
		o.n.Qmgr.Flush()
		return nil
	}
	return queueErr(o.n.Qmgr.Retry(id))
}

// QueueDelete removes a message from the queue without a report.
func (o *Operator) QueueDelete(ctx context.Context, id string) error {
	return queueErr(o.n.Qmgr.Delete(ctx, id))
}

// Reload re-reads the configuration (O5); see Node.Reload.
func (o *Operator) Reload(ctx context.Context) error { return o.n.Reload(ctx) }

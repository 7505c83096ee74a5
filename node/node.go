// Package node assembles one pfrouter server from the packages that do the
// work: its directory and link-state view, durable queue, message store,
// queue manager, SMTP listener, IMAP4/POP3 front ends, admin API and
// tracking log. Bind opens every listener of the servers to run (port 0
// allowed) and writes the bound addresses into the organization, so that
// in one process every server knows where its peers really listen; Start
// then brings one server up. `pfrouter serve` and the integration tests use
// it; nothing here makes a routing decision.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"pfrouter/auth"
	"pfrouter/changes"
	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/imapd"
	"pfrouter/linkstate"
	"pfrouter/qmgr"
	"pfrouter/queue"
	"pfrouter/relay"
	"pfrouter/replication"
	"pfrouter/routing"
	"pfrouter/servercred"
	"pfrouter/smtpd"
	"pfrouter/store"
	"pfrouter/telemetry"
	"pfrouter/tlsutil"
	"pfrouter/tracking"
)

// Listeners are one server's bound sockets, by listen key (smtp, imap, ...).
type Listeners map[string]net.Listener

// Bind opens the listeners of the named servers (all when names is empty)
// and rewrites their listen addresses in org to the bound ones. Call it
// before building anything from org.
func Bind(org *config.Org, names []string) (map[string]Listeners, error) {
	want := map[string]bool{}
	for _, n := range names {
		if org.ServerByName(n) == nil {
			return nil, fmt.Errorf("server %q is not defined in the organization", n)
		}
		want[n] = true
	}
	out := map[string]Listeners{}
	gossipTaken := map[string]bool{}
	closeAll := func() {
		for _, ls := range out {
			for _, l := range ls {
				l.Close()
			}
		}
	}
	for i := range org.Servers {
		s := &org.Servers[i]
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		ls := Listeners{}
		for _, f := range []struct {
			key  string
			addr *string
		}{{"smtp", &s.Listen.SMTP}, {"imap", &s.Listen.IMAP}, {"imaps", &s.Listen.IMAPS}, {"pop3", &s.Listen.POP3},
			{"pop3s", &s.Listen.POP3S}, {"admin", &s.Listen.Admin}, {"replication", &s.Listen.Replication}} {
			if *f.addr == "" {
				continue
			}
			l, err := net.Listen("tcp", *f.addr)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("server %s: listen.%s %s: %w", s.Name, f.key, *f.addr, err)
			}
			ls[f.key] = l
			*f.addr = l.Addr().String()
		}
		if s.Listen.Gossip != "" {
			asked := s.Listen.Gossip
			for try := 0; ; try++ { // two servers of this process never get one port
				var err error
				if s.Listen.Gossip, err = reserveGossipAddr(asked); err != nil {
					closeAll()
					return nil, fmt.Errorf("server %s: listen.gossip: %w", s.Name, err)
				}
				if !gossipTaken[s.Listen.Gossip] || try == 10 {
					break
				}
			}
			gossipTaken[s.Listen.Gossip] = true
		}
		out[s.Name] = ls
	}
	return out, nil
}

// Options configure a server.
type Options struct {
	// BaseDir holds the data directories of servers without data_dir.
	BaseDir string
	Logger  *slog.Logger
	// NewTelemetry, when set, gives each server its telemetry instead of
	// the config's exporter (tests inject in-memory span recorders).
	NewTelemetry func(server string) *telemetry.Telemetry
}

// Node is one running server.
type Node struct {
	Name      string
	Org       *config.Org
	Directory *directory.Directory
	LinkState *linkstate.Table
	Queue     *queue.Queue
	Store     *store.Store
	Qmgr      *qmgr.Manager
	SMTP      *smtpd.Server
	Auth      *auth.Policy
	IMAP      *imapd.Server
	DataDir   string
	Secret    string
	// Identity is this server's certificate from the organization CA
	// (servercred): every connection to or from a peer server uses it.
	Identity  *servercred.Identity
	Log       *slog.Logger
	Tracking  *tracking.Log
	Telemetry *telemetry.Telemetry
	// Replication pulls public folder changes from peers and serves
	// theirs (nil without listen.replication).
	Replication *replication.Service
	// AdminExtra are handlers the admin API mounts beside its own
	// (tracking lookups, metrics).
	AdminExtra map[string]http.Handler

	ops       opsState // gossip, admin API, reload (ops.go)
	changes   *changes.Manager
	listeners Listeners
	minAge    atomic.Int64
	relay     *relay.Client
	closers   []func(context.Context) error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
}

// Start brings up server name of org on the listeners Bind opened.
func Start(ctx context.Context, org *config.Org, name string, ls Listeners, o Options) (_ *Node, err error) {
	srv := org.ServerByName(name)
	if srv == nil {
		return nil, fmt.Errorf("server %q is not defined in the organization", name)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// n is not the named result: the closers below refer to it, and a
	// failed start returns nil without clearing it.
	n := &Node{Name: name, Org: org, listeners: ls, Log: o.Logger.With("server", name)}
	n.DataDir = org.DataDir(srv, o.BaseDir)
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server %s: data directory: %w", name, err)
	}
	defer func() {
		if err != nil { // close what was opened
			n.Close(context.Background())
		}
	}()
	// Without secret or secret_file, the servers of one process share a
	// secret generated into the base directory; servers in separate
	// processes must be given one (docs/operations.md).
	if n.Secret, err = org.ResolveSecret(o.BaseDir); err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	if n.Identity, err = identity(n.Secret, name); err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	firstSeen, err := loadFirstSeen(n.DataDir)
	if err != nil {
		return nil, err
	}
	if n.Directory, err = directory.New(org, directory.Options{FirstSeen: firstSeen}); err != nil {
		return nil, fmt.Errorf("server %s: directory: %w", name, err)
	}
	if n.LinkState, err = linkstate.FromConfig(org); err != nil {
		return nil, fmt.Errorf("server %s: link state: %w", name, err)
	}
	n.minAge.Store(int64(org.Routing.EffectiveMinAge()))
	if n.Queue, err = queue.Open(filepath.Join(n.DataDir, "queue"), n.Log); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func(context.Context) error { return n.Queue.Close() })
	if n.Store, err = store.OpenWith(filepath.Join(n.DataDir, "store"), n.Log,
		store.Options{BodiesInValueLog: n.Org.Limits.StoreBodies == config.StoreBodiesValueLog}); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func(context.Context) error { return n.Store.Close() })
	n.startMaintenance()
	if n.Tracking, err = tracking.Open(filepath.Join(n.DataDir, "tracking"), time.Duration(org.Tracking.Retention), n.Log, tracking.WithServer(name)); err != nil {
		return nil, fmt.Errorf("server %s: tracking log: %w", name, err)
	}
	n.closers = append(n.closers, func(context.Context) error { return n.Tracking.Close() })
	if o.NewTelemetry != nil {
		n.Telemetry = o.NewTelemetry(name)
	} else {
		if n.Telemetry, err = telemetry.Setup(ctx, telemetry.Config{Traces: org.Telemetry.Traces, Endpoint: org.Telemetry.Endpoint, Server: name}); err != nil {
			return nil, fmt.Errorf("server %s: %w", name, err)
		}
	}
	tel := n.Telemetry
	n.closers = append(n.closers, func(ctx context.Context) error { return tel.Shutdown(ctx) })
	n.AdminExtra = map[string]http.Handler{tracking.Path: tracking.Handler(n.Tracking), "/metrics": tel.MetricsHandler(),
		"GET /v1/replication": http.HandlerFunc(n.replicationStatus)}
	obs := &observer{server: name, tel: tel, log: n.Tracking}
	tlsCfg, err := tlsutil.Load(firstNonEmpty(srv.TLS.CertFile, org.TLS.CertFile), firstNonEmpty(srv.TLS.KeyFile, org.TLS.KeyFile), n.DataDir, []string{name})
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	n.relay = &relay.Client{Self: name, Identity: n.Identity, PeerAt: n.serverAtSMTP, Timeout: 30 * time.Second}
	// Runtime changes exist before the queue manager, which publishes its
	// outbound connectors' health through them; they reroute its queue.
	n.changes = changes.New(changes.Options{Server: name, Directory: n.Directory, LinkState: n.LinkState, Logger: n.Log,
		SetMinAge: func(d time.Duration) { n.minAge.Store(int64(d)) }, Changed: func() { n.Qmgr.LinkStateChanged() }})
	n.Qmgr = qmgr.New(qmgr.Options{Server: name, Org: org, Queue: n.Queue, Store: n.Store, Directory: n.Directory,
		LinkState: n.LinkState, Relay: n.relay, Outbound: smarthosts{n}, SetOutboundHealth: n.changes.SetOutboundHealth,
		Params: n.Params, Logger: n.Log, OnEvent: obs.event, Trace: obs, RelayAtAccept: true})
	tel.Metrics().SetQueueDepthFunc(func() int64 { return int64(n.Qmgr.Depth()) })
	if err := n.Qmgr.Start(context.Background()); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, func(context.Context) error { n.Qmgr.Close(); n.relay.Close(); return nil })
	if err := n.startOps(ctx, ls["admin"], srv, tlsCfg); err != nil {
		return nil, err
	}
	n.Auth = auth.New(auth.Options{Directory: n.Directory, ServerName: name,
		LoginType: org.Access.LoginType, CrossSite: org.Access.CrossSite, Logger: n.Log})
	if l := ls["smtp"]; l != nil {
		n.SMTP = smtpd.New(smtpd.Options{ServerName: name, Limits: smtpLimits(org), MaxLineLength: org.Limits.MaxLineLength,
			TLSConfig: n.Identity.WrapServerTLS(tlsCfg), Acceptor: n.Qmgr, Logger: n.Log, NewMessageID: n.newMessageID,
			Checker: smtpd.DirectoryChecker{Directory: n.Directory, Refused: func(code string) { tel.Metrics().Refused(context.Background(), code) }},
			Auth:    smtpd.OrgAuthenticator{Directory: n.Directory, Users: n.Auth},
			Servers: smtpd.OrgAuthenticator{Directory: n.Directory, Users: n.Auth}})
		n.serve("smtp", func() error { return n.SMTP.Serve(l) })
		n.closers = append(n.closers, func(ctx context.Context) error {
			// Sessions in progress get a grace period; idle sessions
			// (peers' pooled relay connections) must not hold the stop.
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if err := n.SMTP.Shutdown(sctx); err != nil {
				return n.SMTP.Close()
			}
			return nil
		})
	}
	if ls["replication"] != nil {
		n.startReplication(ls["replication"], n.Identity)
	}
	if err := n.startAccess(ls, n.Identity.WrapServerTLS(tlsCfg)); err != nil {
		return nil, fmt.Errorf("server %s: access tier: %w", name, err)
	}
	n.Log.Info("server started", "data_dir", n.DataDir, "smtp", srv.Listen.SMTP, "routing_group", srv.RoutingGroup, "site", srv.Site)
	return n, nil
}

func (n *Node) serve(what string, fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errServerClosed) {
			n.Log.Error("listener stopped", "listener", what, "err", err)
		}
	}()
}

var errServerClosed = errors.New("smtp: server already closed")

// Close stops listeners first (sessions in progress get until ctx ends),
// then the queue manager (attempts in flight finish or stay queued), then
// the databases, in reverse order of start.
func (n *Node) Close(ctx context.Context) error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	for _, l := range n.listeners {
		l.Close()
	}
	n.wg.Wait()
	return errors.Join(errs...)
}

// Params are the routing tunables in force (store_min_age is tunable at
// runtime, O1).
func (n *Node) Params() routing.Params {
	r := n.routingConfig()
	return routing.Params{MinAge: time.Duration(n.minAge.Load()), HopLimit: r.HopLimit, Spread: r.Spread}
}

// SetStoreMinAge changes store_min_age for the next decisions.
func (n *Node) SetStoreMinAge(d time.Duration) { n.minAge.Store(int64(d)); n.Qmgr.LinkStateChanged() }

func smtpLimits(org *config.Org) smtpd.Limits {
	l := org.Limits
	return smtpd.Limits{MaxMessageBytes: int64(l.MaxMessageSize), MaxRecipients: l.MaxRecipients,
		MaxConnections: l.MaxConnections, MaxConnectionsPerIP: l.MaxConnectionsPerIP, PerIPExempt: serverIPs(org)}
}

// serverIPs are the literal IP addresses the organization's servers
// listen on for SMTP: relays come from them (a server given by host name
// is not resolved, and stays subject to the per-address cap).
func serverIPs(org *config.Org) []string {
	var out []string
	for _, s := range org.Servers {
		host, _, err := net.SplitHostPort(s.Listen.SMTP)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !slices.Contains(out, ip.String()) {
			out = append(out, ip.String())
		}
	}
	return out
}

func (n *Node) newMessageID() string {
	domain := "localhost"
	if len(n.Org.Domains) > 0 {
		domain = n.Org.Domains[0].Name
	}
	return "<" + n.Queue.NewID() + "@" + n.Name + "." + domain + ">"
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// loadFirstSeen gives stores without a configured created time the time
// this server first saw them, kept in first-seen.json so a restart does not
// make them young again (R6).
func loadFirstSeen(dataDir string) (func(string) time.Time, error) {
	path := filepath.Join(dataDir, "first-seen.json")
	seen := map[string]time.Time{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &seen); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var mu sync.Mutex
	return func(store string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		if t, ok := seen[store]; ok {
			return t
		}
		t := time.Now().UTC().Truncate(time.Second)
		seen[store] = t
		if b, err := json.MarshalIndent(seen, "", "  "); err == nil {
			os.WriteFile(path, b, 0o600)
		}
		return t
	}, nil
}

// identity derives the organization CA from the secret and issues this
// server's certificate (servercred).
func identity(secret, name string) (*servercred.Identity, error) {
	org, err := servercred.New(secret)
	if err != nil {
		return nil, fmt.Errorf("organization secret: %w", err)
	}
	return org.Identity(name)
}

// serverAtSMTP names the server whose SMTP listener is addr, for the relay
// to verify its certificate.
func (n *Node) serverAtSMTP(addr string) (string, bool) {
	for _, s := range n.Directory.Snapshot().Servers() {
		if s.Listen.SMTP == addr {
			return s.Name, true
		}
	}
	return "", false
}

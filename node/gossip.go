package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/gossip"
	"pfrouter/linkstate"
)

// This file turns runtime changes into gossip records and gossip records
// into changes of this server's directory, link state and tunables (the
// gossip.Applier), and feeds memberlist's failure detection into link
// state (R10). Without listen.gossip a server applies its changes locally
// only (and forgets them on restart).

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

type replicaValue struct {
	Hierarchy string `json:"hierarchy"`
	Folder    string `json:"folder"`
	Store     string `json:"store"`
	By        string `json:"by,omitempty"`
}

// startGossip joins the organization's memberlist cluster on
// listen.gossip. Seeds are the other servers' listen.gossip; in one
// process Bind has already replaced port 0 by a reserved port, so every
// server knows where its peers are before any starts.
func (n *Node) startGossip(srv *config.Server) error {
	var seeds []string
	for _, s := range n.Org.Servers {
		if s.Name != n.Name && s.Listen.Gossip != "" {
			seeds = append(seeds, s.Listen.Gossip)
		}
	}
	g, err := gossip.Start(n.ops.ctx, gossip.Options{
		Name: n.Name, Bind: srv.Listen.Gossip, Seeds: seeds, Secret: n.Secret,
		Dir: filepath.Join(n.DataDir, "gossip"), Applier: gossip.ApplierFunc(n.applyRecord),
		Logger: n.Log, OnMemberChange: n.memberChanged,
		// Broadcasts carry a change at once; anti-entropy every 5 s repairs
		// a lost one quickly even under load.
		PushPullInterval: 5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("server %s: %w", n.Name, err)
	}
	n.ops.gossip = g
	return nil
}

// publish makes a change everywhere: through gossip when it runs, else
// locally with a local clock. The change is applied here before publish
// returns, so the next routing decision on this server uses it.
func (n *Node) publish(kind, key string, value any) error {
	if g := n.ops.gossip; g != nil {
		if _, err := g.Publish(kind, key, value); err != nil {
			return err
		}
		return nil
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	n.ops.localMu.Lock()
	defer n.ops.localMu.Unlock()
	n.ops.localClock++
	r := gossip.Record{Kind: kind, Key: key, Origin: n.Name, Version: n.ops.localClock, At: time.Now().UTC(), Value: raw}
	if err := n.applyRecord(r); err != nil {
		n.ops.localClock--
		return err
	}
	if n.ops.localRecs == nil {
		n.ops.localRecs = map[string]gossip.Record{}
	}
	n.ops.localRecs[kind+"\x00"+key] = r
	return nil
}

// records are the winning runtime changes, oldest first (a store before a
// replica that names it).
func (n *Node) records() []gossip.Record {
	var out []gossip.Record
	if g := n.ops.gossip; g != nil {
		out = g.Records()
	} else {
		n.ops.localMu.Lock()
		for _, r := range n.ops.localRecs {
			out = append(out, r)
		}
		n.ops.localMu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// stateVersion is the link-state version the admin API shows: the gossip
// version, equal on every server that has converged.
func (n *Node) stateVersion() uint64 {
	if g := n.ops.gossip; g != nil {
		return g.Version()
	}
	n.ops.localMu.Lock()
	defer n.ops.localMu.Unlock()
	return n.ops.localClock
}

// applyRecord is the gossip Applier. Records from a server that is not in
// the organization are ignored (logged): link-state data is accepted only
// from servers of the organization (R13b).
func (n *Node) applyRecord(r gossip.Record) error {
	if n.Directory.Snapshot().Server(r.Origin) == nil {
		n.Log.Warn("gossip: record from a server outside the organization ignored", "kind", r.Kind, "key", r.Key, "origin", r.Origin)
		return nil
	}
	n.ops.applyMu.Lock()
	err := n.applyTo(n.Directory, n.LinkState, r, true)
	n.ops.applyMu.Unlock()
	if err != nil {
		return err
	}
	n.Log.Info("runtime change applied", "kind", r.Kind, "key", r.Key, "origin", r.Origin, "version", r.Version)
	// Queued messages waiting for a route are routed again now, not at
	// their next retry (issue item 5, R10).
	n.Qmgr.LinkStateChanged()
	return nil
}

// applyTo applies one record to a directory and a link-state table: the
// live ones, or (reload) fresh ones about to be swapped in. live says
// whether node-level tunables (store_min_age) change too.
func (n *Node) applyTo(dir *directory.Directory, ls *linkstate.Table, r gossip.Record, live bool) error {
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
	case gossip.KindServer:
		var v serverValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("server %q: bad value: %w", r.Key, err)
		}
		n.ops.memberMu.Lock()
		if n.ops.maintenance == nil {
			n.ops.maintenance = map[string]bool{}
		}
		n.ops.maintenance[r.Key] = v.Down
		down := v.Down || n.ops.dead[r.Key]
		n.ops.memberMu.Unlock()
		_, err := ls.SetServerDown(r.Key, down)
		return err
	case gossip.KindStoreMinAge:
		var v minAgeValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("store_min_age: bad value: %w", err)
		}
		d, err := time.ParseDuration(v.StoreMinAge)
		if err != nil || d < 0 {
			return fmt.Errorf("store_min_age %q is not a duration >= 0", v.StoreMinAge)
		}
		if live {
			n.minAge.Store(int64(d))
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
		// store's age (R6).
		_, err := dir.AddStore(directory.Store{Name: v.Name, Kind: v.Kind, Server: v.Server, Hierarchy: v.Hierarchy, Created: r.At, Synced: true})
		return err
	case gossip.KindReplica:
		var v replicaValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("replica %q: bad value: %w", r.Key, err)
		}
		return dir.AddReplica(v.Hierarchy, v.Folder, v.Store)
	}
	n.Log.Warn("gossip: record of an unknown kind ignored (a newer server?)", "kind", r.Kind, "key", r.Key, "origin", r.Origin)
	return nil
}

// memberChanged feeds memberlist's failure detection into link state: a
// dead server is unreachable for routing, and a connector whose
// bridgeheads on one side are all dead carries nothing (R10); linkstate
// works that out from the server states. A server in maintenance stays
// down when it comes back alive.
func (n *Node) memberChanged(server string, alive bool) {
	n.ops.memberMu.Lock()
	if n.ops.dead == nil {
		n.ops.dead = map[string]bool{}
	}
	n.ops.dead[server] = !alive
	down := !alive || n.ops.maintenance[server]
	n.ops.memberMu.Unlock()
	if _, err := n.LinkState.SetServerDown(server, down); err != nil {
		n.Log.Warn("gossip: member change for a server not in link state", "member", server, "alive", alive, "err", err)
		return
	}
	n.Log.Info("link state: server reachability changed by failure detection", "member", server, "alive", alive, "down", down)
	if n.Qmgr != nil {
		n.Qmgr.LinkStateChanged()
	}
}

// reserveGossipAddr replaces port 0 in a listen.gossip address by a port
// free for both TCP and UDP (memberlist needs both on one port). Bind calls
// it so that, in one process, every server's gossip address is known
// before the first server starts and seeds can be used at once. The port
// is released again for memberlist to bind; the window is tiny.
func reserveGossipAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return addr, nil
	}
	var lastErr error
	for range 20 {
		tl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", err
		}
		p := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		tl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		ul.Close()
		return net.JoinHostPort(host, strconv.Itoa(p)), nil
	}
	return "", errors.Join(errors.New("no port free for both TCP and UDP"), lastErr)
}

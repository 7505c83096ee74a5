package console

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"pfrouter/admin"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/replication"
	"pfrouter/tracking"
)

// This file turns admin API answers into what the pages show. It is pure:
// no I/O, table-tested.

// Topology is the map's data, served as JSON to the page's script and
// rendered as tables for the page itself.
type Topology struct {
	Self       string      `json:"self"`
	Version    uint64      `json:"version"`
	Groups     []Group     `json:"groups"`
	Connectors []Connector `json:"connectors"`
	// Outbound are the outbound SMTP connectors: link-state entries with
	// a cost and a state, but no edge between routing groups on the map.
	Outbound []Connector `json:"outbound"`
	Error    string      `json:"error,omitempty"`
}

// Group is a routing group with its servers.
type Group struct {
	Name    string       `json:"name"`
	Servers []ServerNode `json:"servers"`
}

// ServerNode is one server on the map.
type ServerNode struct {
	Name       string `json:"name"`
	Down       bool   `json:"down"`
	Cause      string `json:"cause,omitempty"`
	Bridgehead bool   `json:"bridgehead,omitempty"`
	Self       bool   `json:"self,omitempty"`
}

// Connector is one edge of the map.
type Connector struct {
	Name         string   `json:"name"`
	A            string   `json:"a"`
	B            string   `json:"b"`
	Cost         int      `json:"cost"`
	Up           bool     `json:"up"`
	OneWay       bool     `json:"one_way,omitempty"`
	Cause        string   `json:"cause,omitempty"`
	BridgeheadsA []string `json:"bridgeheads_a"`
	BridgeheadsB []string `json:"bridgeheads_b"`
	ChangedBy    string   `json:"changed_by,omitempty"`
	ChangedAt    string   `json:"changed_at,omitempty"`
	// Outbound is an outbound SMTP connector; AddressSpaces and Sources
	// describe it.
	Outbound      bool     `json:"outbound,omitempty"`
	AddressSpaces []string `json:"address_spaces,omitempty"`
	Sources       []string `json:"source_servers,omitempty"`
}

// causes says why a connector or server is down: the link-state causes
// (hop-health, maintenance, member-death, config), joined.
func causes(cs linkstate.Causes) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return strings.Join(out, ", ")
}

// buildTopology groups servers by routing group; groups named only by a
// connector still appear.
func buildTopology(self string, ls admin.LinkState) Topology {
	t := Topology{Self: self, Version: ls.Version, Groups: []Group{}, Connectors: []Connector{}, Outbound: []Connector{}}
	bridge := map[string]bool{}
	idx := map[string]int{}
	group := func(name string) int {
		if i, ok := idx[name]; ok {
			return i
		}
		idx[name] = len(t.Groups)
		t.Groups = append(t.Groups, Group{Name: name, Servers: []ServerNode{}})
		return idx[name]
	}
	for _, c := range ls.Connectors {
		for _, s := range c.BridgeheadsA {
			bridge[s] = true
		}
		for _, s := range c.BridgeheadsB {
			bridge[s] = true
		}
		cc := Connector{Name: c.Name, A: c.A, B: c.B, Cost: c.Cost, Up: c.Up, OneWay: c.OneWay,
			BridgeheadsA: nonNil(c.BridgeheadsA), BridgeheadsB: nonNil(c.BridgeheadsB), ChangedBy: c.ChangedBy}
		if !c.ChangedAt.IsZero() {
			cc.ChangedAt = c.ChangedAt.UTC().Format(time.RFC3339)
		}
		if !c.Up {
			cc.Cause = causes(c.Causes)
		}
		if c.Outbound {
			cc.Outbound, cc.AddressSpaces, cc.Sources = true, c.AddressSpaces, c.Sources
			t.Outbound = append(t.Outbound, cc)
			continue
		}
		t.Connectors = append(t.Connectors, cc)
	}
	for _, s := range ls.Servers {
		i := group(s.RoutingGroup)
		n := ServerNode{Name: s.Name, Down: s.Down, Bridgehead: bridge[s.Name], Self: s.Name == self}
		if s.Down {
			n.Cause = causes(s.Causes)
		}
		t.Groups[i].Servers = append(t.Groups[i].Servers, n)
	}
	for _, c := range ls.Connectors {
		if !c.Outbound {
			group(c.A)
			group(c.B)
		}
	}
	sort.SliceStable(t.Groups, func(i, j int) bool { return t.Groups[i].Name < t.Groups[j].Name })
	for i := range t.Groups {
		sort.Slice(t.Groups[i].Servers, func(a, b int) bool { return t.Groups[i].Servers[a].Name < t.Groups[i].Servers[b].Name })
	}
	sort.SliceStable(t.Connectors, func(i, j int) bool { return t.Connectors[i].Name < t.Connectors[j].Name })
	sort.SliceStable(t.Outbound, func(i, j int) bool { return t.Outbound[i].Name < t.Outbound[j].Name })
	return t
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// QueueSummary is one server's queue at a glance.
type QueueSummary struct {
	Server  string
	Error   string
	Items   []admin.QueueItem
	ByState []Count // recipients by delivery state
	ByHop   []Count // undelivered recipients by next hop
	Oldest  *admin.QueueItem
}

// Count is a label and how many.
type Count struct {
	Label string
	N     int
}

func summarizeQueue(server string, items []admin.QueueItem) QueueSummary {
	q := QueueSummary{Server: server, Items: items}
	states, hops := map[string]int{}, map[string]int{}
	for i := range items {
		it := &items[i]
		if q.Oldest == nil || it.Arrived.Before(q.Oldest.Arrived) {
			q.Oldest = it
		}
		for _, r := range it.Recipients {
			states[r.State]++
			if r.State == "delivered" || r.State == "failed" {
				continue
			}
			hop := r.NextHop
			if hop == "" {
				hop = "(not routed yet / local)"
			}
			hops[hop]++
		}
	}
	q.ByState, q.ByHop = counts(states), counts(hops)
	return q
}

func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, Count{k, m[k]})
	}
	return out
}

// Step is one row of a message's timeline.
type Step struct {
	Time      time.Time
	Server    string
	Kind      string
	QueueID   string
	MessageID string
	Recipient string
	Details   []KV
}

// KV is one detail of a step.
type KV struct{ K, V string }

// Timeline is a message's path across servers.
type Timeline struct {
	Steps []Step
	// Servers is the order in which servers received the message (by hop
	// count), drawn as the route on the map.
	Servers []string
	// Hops are the relays, [from, to], from the relayed events.
	Hops        [][2]string
	MessageIDs  []string
	Unreachable []KV
}

// detailOrder puts the decision's main facts first; the rest follow by name.
var detailOrder = []string{"rule", "store", "folder", "skipped", "path", "next_hop", "cost", "code", "reason"}

func buildTimeline(res tracking.Result) Timeline {
	tl := Timeline{}
	seenID := map[string]bool{}
	// Events of different servers interleave in time (the sender records
	// "relayed" after the next server's "received"), so the path is the
	// received events ordered by the hop count each carries.
	type received struct {
		hops   int
		server string
	}
	var recv []received
	for _, e := range res.Events {
		st := Step{Time: e.Time, Server: e.Server, Kind: e.Kind, QueueID: e.QueueID, MessageID: e.MessageID, Recipient: e.Recipient}
		done := map[string]bool{}
		for _, k := range detailOrder {
			if v, ok := e.Details[k]; ok {
				st.Details = append(st.Details, KV{k, v})
				done[k] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Details)) {
			if !done[k] {
				st.Details = append(st.Details, KV{k, e.Details[k]})
			}
		}
		tl.Steps = append(tl.Steps, st)
		if e.Kind == tracking.Received && e.Server != "" {
			h, err := strconv.Atoi(e.Details["hops"])
			if err != nil {
				h = len(recv)
			}
			recv = append(recv, received{h, e.Server})
		}
		if hop := e.Details["next_hop"]; e.Kind == tracking.Relayed && hop != "" && e.Server != "" {
			pair := [2]string{e.Server, hop}
			if !slices.Contains(tl.Hops, pair) {
				tl.Hops = append(tl.Hops, pair)
			}
		}
		if e.MessageID != "" && !seenID[e.MessageID] {
			seenID[e.MessageID] = true
			tl.MessageIDs = append(tl.MessageIDs, e.MessageID)
		}
	}
	sort.SliceStable(recv, func(i, j int) bool { return recv[i].hops < recv[j].hops })
	for _, r := range recv {
		if n := len(tl.Servers); n == 0 || tl.Servers[n-1] != r.server {
			tl.Servers = append(tl.Servers, r.server)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(res.Unreachable)) {
		tl.Unreachable = append(tl.Unreachable, KV{k, res.Unreachable[k]})
	}
	return tl
}

// FolderReplicas is one folder with the stores holding its replicas and,
// once read, their live sync state.
type FolderReplicas struct {
	Hierarchy, Path string
	MailEnabled     bool
	Replicas        []ReplicaLoc
	// Read: the status below came from the admin API (GET /v1/replication).
	Read bool
	// InSync: every replica holds every change any reachable replica holds.
	InSync bool
	// StatusError says why the folder's status could not be read at all.
	StatusError string
}

// ReplicaLoc is where one replica lives and, once read, its sync state.
type ReplicaLoc struct {
	Store, Server, RoutingGroup string
	// Synced is whether the store's copy of the hierarchy is complete (R12).
	Synced bool
	// Read: Messages, CNSet, InSync and Behind came from its server;
	// otherwise Error may say why not (server unreachable...).
	Read     bool
	Messages int
	CNSet    string
	InSync   bool
	Behind   int
	Error    string
}

// NotInSync: read and not in sync, or not readable, so the admin looks at it.
func (f FolderReplicas) NotInSync() bool {
	return len(f.Replicas) > 0 && (!f.Read || !f.InSync)
}

func buildReplicas(snap *directory.Snapshot) []FolderReplicas {
	if snap == nil {
		return nil
	}
	var out []FolderReplicas
	for _, f := range snap.Folders() {
		fr := FolderReplicas{Hierarchy: f.Hierarchy, Path: f.Path, MailEnabled: f.MailEnabled}
		for _, r := range snap.Replicas(f.Key) {
			loc := ReplicaLoc{Store: r.Store}
			if st := snap.Store(r.Store); st != nil {
				loc.Server, loc.RoutingGroup, loc.Synced = st.Server, st.RoutingGroup, st.Synced
			}
			fr.Replicas = append(fr.Replicas, loc)
		}
		sort.Slice(fr.Replicas, func(i, j int) bool { return fr.Replicas[i].Store < fr.Replicas[j].Store })
		out = append(out, fr)
	}
	sortReplicas(out)
	return out
}

// sortReplicas puts the folders that need a look (not in sync, unreadable)
// first, then by hierarchy and path.
func sortReplicas(out []FolderReplicas) {
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := out[i].NotInSync(), out[j].NotInSync(); a != b {
			return a
		}
		if out[i].Hierarchy != out[j].Hierarchy {
			return out[i].Hierarchy < out[j].Hierarchy
		}
		return out[i].Path < out[j].Path
	})
}

// addStatus merges a folder's status as the admin API reported it (errMsg:
// why it could not be read) into its replica locations. A replica the
// status does not mention stays unread.
func addStatus(f *FolderReplicas, st replication.FolderStatus, errMsg string) {
	if errMsg != "" {
		f.StatusError = errMsg
		return
	}
	f.Read, f.InSync = true, st.InSync
	byStore := map[string]replication.ReplicaStatus{}
	for _, r := range st.Replicas {
		byStore[r.Store] = r
	}
	for i := range f.Replicas {
		loc := &f.Replicas[i]
		r, ok := byStore[loc.Store]
		switch {
		case !ok:
			loc.Error, f.InSync = "not in the status its server reported", false
		case r.Error != "":
			loc.Error = r.Error
		default:
			loc.Read, loc.Messages, loc.CNSet, loc.InSync, loc.Behind = true, r.Messages, r.CNSet, r.InSync, r.Behind
		}
		if loc.Server == "" {
			loc.Server = r.Server
		}
	}
}

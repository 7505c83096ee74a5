// Package linkstate is a server's view of the organization's topology:
// routing groups as nodes, connectors as edges with a cost and a state,
// bridgehead servers on each side, and which servers are down (SPEC R9, R10,
// R13, R13b). Outbound SMTP connectors are entries too (cost, state and
// causes like any connector) but no edges: routing reads them with
// Graph.Outbound. It answers "cost and path from routing group a to b" and
// "server path (bridgeheads included) from server s to server t".
//
// A Table is the mutable record (config plus runtime changes from the admin
// API, gossip, memberlist's failure detection and the queue manager's
// failure counting). Each of those writers sets or clears its own Cause on
// a server or connector; it is down while any cause holds, so one writer
// clearing its cause (a prober finding a hop answering again) never
// brings back what another put down (an operator's maintenance). Every change bumps
// its version and publishes a new immutable Graph; readers take the current
// Graph with one atomic load and never lock. Shortest-path trees are
// computed once per source routing group per Graph (on first use), never
// per message. It is pure: no I/O.
package linkstate

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Cause is why a server or connector is down. Causes are independent:
// each has one writer, which sets and clears only its own.
type Cause string

const (
	// CauseHopHealth: this server's queue manager failed to reach the
	// server failure_threshold times in a row (R13b); its prober clears
	// it when the server answers again.
	CauseHopHealth Cause = "hop-health"
	// CauseMaintenance: an operator took the server or connector out of
	// routing (admin API, spread by gossip).
	CauseMaintenance Cause = "maintenance"
	// CauseMemberDeath: memberlist's failure detection found the server
	// dead; cleared when it is alive again.
	CauseMemberDeath Cause = "member-death"
	// CauseConfig: the organization file says so (a connector with
	// state: down); a reload that says otherwise clears it.
	CauseConfig Cause = "config"
)

// Causes is a set of causes, sorted, without repeats.
type Causes []Cause

// Has reports whether c is in the set.
func (cs Causes) Has(c Cause) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// with returns the set with c added (on) or removed, and whether it changed.
func (cs Causes) with(c Cause, on bool) (Causes, bool) {
	if cs.Has(c) == on {
		return cs, false
	}
	out := make(Causes, 0, len(cs)+1)
	for _, x := range cs {
		if x != c {
			out = append(out, x)
		}
	}
	if on {
		out = append(out, c)
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	}
	if len(out) == 0 {
		out = nil
	}
	return out, true
}

// Connector is a link between two routing groups.
type Connector struct {
	Name string `json:"name"`
	// A and B are the routing groups it joins; a one-way connector carries
	// mail from A to B only.
	A    string `json:"a"`
	B    string `json:"b"`
	Cost int    `json:"cost"`
	// Up is true when no cause holds; Causes says why it is down.
	Up     bool   `json:"up"`
	Causes Causes `json:"causes,omitempty"`
	OneWay bool   `json:"one_way,omitempty"`
	// NoReferrals takes the connector out of public folder referral paths
	// (config allow_referrals: false); see Graph.Referrals.
	NoReferrals bool `json:"no_referrals,omitempty"`
	// BridgeheadsA and BridgeheadsB are the servers that send and receive
	// over the connector on each side, in preference order.
	BridgeheadsA []string `json:"bridgeheads_a"`
	BridgeheadsB []string `json:"bridgeheads_b"`
	// ChangedBy and ChangedAt say who last changed cost or state, and when.
	ChangedBy string    `json:"changed_by,omitempty"`
	ChangedAt time.Time `json:"changed_at,omitzero"`

	// Outbound marks an outbound SMTP connector (issue 10 item 6): mail
	// for AddressSpaces outside the organization leaves through its
	// Sources to a smarthost. It joins no routing groups (A and B are
	// empty) and is no edge of the graph; routing reads it from
	// Graph.Outbound with the same cost, state and causes as any
	// connector.
	Outbound      bool     `json:"outbound,omitempty"`
	AddressSpaces []string `json:"address_spaces,omitempty"`
	Sources       []string `json:"source_servers,omitempty"`
}

// copySlices gives c slices of its own, so a copy handed out or stored
// never aliases a caller's.
func (c *Connector) copySlices() {
	c.BridgeheadsA = append([]string(nil), c.BridgeheadsA...)
	c.BridgeheadsB = append([]string(nil), c.BridgeheadsB...)
	if c.Outbound {
		c.AddressSpaces = append([]string(nil), c.AddressSpaces...)
		c.Sources = append([]string(nil), c.Sources...)
	}
}

// check refuses a connector that cannot be an edge: one joining a routing
// group to itself. An outbound connector joins none.
func (c *Connector) check() error {
	if !c.Outbound && c.A == c.B {
		return fmt.Errorf("connector %q joins routing group %q to itself", c.Name, c.A)
	}
	return nil
}

// Server is a node's membership: its routing group and whether it is down
// (while any cause holds) and why.
type Server struct {
	Name         string `json:"name"`
	RoutingGroup string `json:"routing_group"`
	Down         bool   `json:"down"`
	Causes       Causes `json:"causes,omitempty"`
}

// normalize makes Down and Causes agree for a server given by a caller: a
// server given as Down without a cause is down by config.
func (s *Server) normalize() {
	s.Causes = append(Causes(nil), s.Causes...)
	if s.Down && len(s.Causes) == 0 {
		s.Causes = Causes{CauseConfig}
	}
	s.Down = len(s.Causes) > 0
}

// normalize is Server.normalize for a connector: given as not Up without a
// cause, it is down by config.
func (c *Connector) normalize() {
	c.Causes = append(Causes(nil), c.Causes...)
	if !c.Up && len(c.Causes) == 0 {
		c.Causes = Causes{CauseConfig}
	}
	c.Up = len(c.Causes) == 0
}

// Table is the mutable link-state record of one server.
type Table struct {
	mu         sync.Mutex
	rgs        []string
	servers    map[string]*Server
	connectors map[string]*Connector
	version    uint64
	cur        atomic.Pointer[Graph]
}

// New builds a table. Routing groups named by servers or connectors but not
// listed are added.
func New(rgs []string, servers []Server, connectors []Connector) (*Table, error) {
	t := &Table{servers: map[string]*Server{}, connectors: map[string]*Connector{}}
	seen := map[string]bool{}
	addRG := func(rg string) {
		if rg != "" && !seen[rg] {
			seen[rg] = true
			t.rgs = append(t.rgs, rg)
		}
	}
	for _, rg := range rgs {
		addRG(rg)
	}
	for _, s := range servers {
		if _, dup := t.servers[s.Name]; dup {
			return nil, fmt.Errorf("linkstate: server %q listed twice", s.Name)
		}
		s := s
		s.normalize()
		t.servers[s.Name] = &s
		addRG(s.RoutingGroup)
	}
	for _, c := range connectors {
		if _, dup := t.connectors[c.Name]; dup {
			return nil, fmt.Errorf("linkstate: connector %q listed twice", c.Name)
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("linkstate: %w", err)
		}
		c := c
		c.normalize()
		c.copySlices()
		t.connectors[c.Name] = &c
		addRG(c.A)
		addRG(c.B)
	}
	t.version = 1
	t.publish()
	return t, nil
}

// Graph returns the current immutable graph.
func (t *Table) Graph() *Graph { return t.cur.Load() }

// Version is the current version; every change bumps it.
func (t *Table) Version() uint64 { return t.Graph().version }

// ErrUnknown is wrapped by changes naming a connector or server that does
// not exist.
var ErrUnknown = fmt.Errorf("not in link state")

// SetCost changes a connector's cost (1–100). It returns the new version.
func (t *Table) SetCost(name string, cost int, by string, at time.Time) (uint64, error) {
	if cost < 1 || cost > 100 {
		return 0, fmt.Errorf("connector %q: cost %d is outside 1–100", name, cost)
	}
	return t.changeConnector(name, by, at, func(c *Connector) bool {
		if c.Cost == cost {
			return false
		}
		c.Cost = cost
		return true
	})
}

// SetUp is an operator's state for a connector: down sets
// CauseMaintenance, up clears it. A connector down for another cause (the
// config file) stays down. It returns the new version.
func (t *Table) SetUp(name string, up bool, by string, at time.Time) (uint64, error) {
	return t.SetConnectorCause(name, CauseMaintenance, !up, by, at)
}

// SetConnectorCause sets (on) or clears one cause of a connector being
// down. It returns the new version.
func (t *Table) SetConnectorCause(name string, cause Cause, on bool, by string, at time.Time) (uint64, error) {
	return t.changeConnector(name, by, at, func(c *Connector) bool {
		var changed bool
		c.Causes, changed = c.Causes.with(cause, on)
		c.Up = len(c.Causes) == 0
		return changed
	})
}

func (t *Table) changeConnector(name, by string, at time.Time, fn func(*Connector) bool) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.connectors[name]
	if !ok {
		return 0, fmt.Errorf("connector %q: %w", name, ErrUnknown)
	}
	if !fn(c) {
		return t.version, nil
	}
	c.ChangedBy, c.ChangedAt = by, at
	t.version++
	t.publish()
	return t.version, nil
}

// SetServerDown is an operator's maintenance state for a server: down
// sets CauseMaintenance, up clears it (SetServerCause). A connector whose
// bridgeheads on one side are all down carries nothing (R10).
func (t *Table) SetServerDown(name string, down bool) (uint64, error) {
	return t.SetServerCause(name, CauseMaintenance, down)
}

// SetServerCause sets (on) or clears one cause of a server being down. The
// server is down while any cause holds. It returns the new version, the
// same one when nothing changed.
func (t *Table) SetServerCause(name string, cause Cause, on bool) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.servers[name]
	if !ok {
		return 0, fmt.Errorf("server %q: %w", name, ErrUnknown)
	}
	var changed bool
	if s.Causes, changed = s.Causes.with(cause, on); !changed {
		return t.version, nil
	}
	s.Down = len(s.Causes) > 0
	t.version++
	t.publish()
	return t.version, nil
}

// AddConnector adds a connector, or replaces one with the same name.
func (t *Table) AddConnector(c Connector) (uint64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rg := range []string{c.A, c.B} {
		if rg != "" && !containsStr(t.rgs, rg) {
			t.rgs = append(t.rgs, rg)
		}
	}
	c.normalize()
	c.copySlices()
	t.connectors[c.Name] = &c
	t.version++
	t.publish()
	return t.version, nil
}

// AddServer adds a server (or moves it to another routing group).
func (t *Table) AddServer(s Server) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.RoutingGroup != "" && !containsStr(t.rgs, s.RoutingGroup) {
		t.rgs = append(t.rgs, s.RoutingGroup)
	}
	s.normalize()
	t.servers[s.Name] = &s
	t.version++
	t.publish()
	return t.version
}

// Connectors lists the connectors by name, as copies.
func (t *Table) Connectors() []Connector {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Connector, 0, len(t.connectors))
	for _, c := range t.connectors {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Connector returns a copy of one connector.
func (t *Table) Connector(name string) (Connector, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.connectors[name]
	if !ok {
		return Connector{}, false
	}
	return *c, true
}

// Servers lists the servers by name, as copies.
func (t *Table) Servers() []Server {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Server, 0, len(t.servers))
	for _, s := range t.servers {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func containsStr(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// publish builds the graph for the current record. Called with mu held.
func (t *Table) publish() {
	g := &Graph{version: t.version, rgIndex: make(map[string]int32, len(t.rgs)), serverRG: make(map[string]int32, len(t.servers)), down: map[string]bool{}}
	g.rgNames = append([]string(nil), t.rgs...)
	sort.Strings(g.rgNames) // index order = name order: ties break by name
	for i, rg := range g.rgNames {
		g.rgIndex[rg] = int32(i)
	}
	for _, s := range t.servers {
		// A server without a (known) routing group is not routable; the
		// map's zero value would silently put it in the first group.
		if i, ok := g.rgIndex[s.RoutingGroup]; ok {
			g.serverRG[s.Name] = i
		}
		if s.Down {
			g.down[s.Name] = true
		}
	}
	names := make([]string, 0, len(t.connectors))
	for n := range t.connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	g.adj = make([][]edge, len(g.rgNames))
	for _, n := range names {
		c := t.connectors[n]
		if c.Outbound {
			// Not an edge: routing reads it from Graph.Outbound.
			g.outbound = append(g.outbound, *c)
			continue
		}
		ci := conn{name: c.Name, a: g.rgIndex[c.A], b: g.rgIndex[c.B], cost: int32(c.Cost), noReferrals: c.NoReferrals}
		ci.bhA = firstLive(c.BridgeheadsA, g.down)
		ci.bhB = firstLive(c.BridgeheadsB, g.down)
		g.conns = append(g.conns, ci)
		// A connector carries mail only when it is up and has a live
		// bridgehead on each side (R10). No bridgeheads listed on a side
		// means any server of that routing group will do.
		usable := c.Up && (len(c.BridgeheadsA) == 0 || ci.bhA != "") && (len(c.BridgeheadsB) == 0 || ci.bhB != "")
		if !usable {
			continue
		}
		idx := int32(len(g.conns) - 1)
		g.adj[ci.a] = append(g.adj[ci.a], edge{to: ci.b, cost: ci.cost, conn: idx})
		if !c.OneWay {
			g.adj[ci.b] = append(g.adj[ci.b], edge{to: ci.a, cost: ci.cost, conn: idx})
		}
	}
	g.spt = make([]sptSlot, len(g.rgNames))
	g.ids = numberServers(t.servers, g)
	t.cur.Store(g)
}

// serverIDs numbers the servers of one graph (every server of the table
// and every live bridgehead a connector names) so the routing hot path
// walks paths by integer ids: per server its name, routing group and
// whether it is down in arrays (numberServers also fills Graph.hops, the
// connectors' bridgeheads by id). Ids are specific to one Graph.
type serverIDs struct {
	id    map[string]int32
	names []string
	rg    []int32 // routing-group index, -1: not routable (not in the table, or no known group)
	down  []bool
}

func numberServers(servers map[string]*Server, g *Graph) *serverIDs {
	ids := &serverIDs{id: make(map[string]int32, len(servers))}
	add := func(name string) int32 {
		if name == "" {
			return -1
		}
		if i, ok := ids.id[name]; ok {
			return i
		}
		i := int32(len(ids.names))
		ids.id[name] = i
		ids.names = append(ids.names, name)
		rg, ok := g.serverRG[name]
		if !ok {
			rg = -1
		}
		ids.rg = append(ids.rg, rg)
		ids.down = append(ids.down, g.down[name])
		return i
	}
	names := make([]string, 0, len(servers))
	for n := range servers {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic ids
	for _, n := range names {
		add(n)
	}
	g.hops = make([]connHop, len(g.conns))
	for i := range g.conns {
		c := &g.conns[i]
		g.hops[i] = connHop{a: c.a, b: c.b, bhA: add(c.bhA), bhB: add(c.bhB)}
	}
	return ids
}

func firstLive(bhs []string, down map[string]bool) string {
	for _, b := range bhs {
		if !down[b] {
			return b
		}
	}
	return ""
}

// Graph is an immutable link-state snapshot.
type Graph struct {
	version  uint64
	rgNames  []string
	rgIndex  map[string]int32
	serverRG map[string]int32
	down     map[string]bool
	conns    []conn
	hops     []connHop // by connector index: what a path walk reads of conns
	adj      [][]edge
	spt      []sptSlot
	outbound []Connector
	ids      *serverIDs

	referrals     sync.Once
	referralGraph *Graph
}

type conn struct {
	name     string
	a, b     int32
	cost     int32
	bhA, bhB string // first live bridgehead per side, "" if none (their ids: Graph.hops)
	// noReferrals: not usable by Referrals' graph.
	noReferrals bool
}

// connHop is a connector as a path walk crosses it: the routing groups it
// joins and their bridgeheads' ids (-1: none), 16 bytes, so the
// connectors of a path are read from a small array (80 KB for 5,000)
// rather than from conn records four times that size.
type connHop struct{ a, b, bhA, bhB int32 }

type edge struct{ to, cost, conn int32 }

// sptSlot is a lazily computed shortest-path tree from one source RG.
type sptSlot struct {
	once sync.Once
	t    *tree
}

type tree struct {
	// n is per routing group its distance, hops and where its path
	// starts in path, side by side: a cost lookup reads one cache line.
	n []tnode
	// path holds, per reachable routing group, the connectors of its
	// lowest-cost path from the source in order (n[g].hops of them from
	// n[g].off): a path walk reads one or two cache lines instead of
	// following a predecessor chain, one dependent cache miss per hop
	// (lowest-cost paths on the big benchmark org average 6.5 hops).
	path []int32
	// reach has bit n set when routing group n is reachable: 128 bytes
	// for 1,000 groups, so a step-1 scan of 20 stores touches two cache
	// lines instead of 20 (see ReachableByID).
	reach []uint64
}

type tnode struct{ dist, hops, off int32 }

const inf = int32(1 << 30)

// Version is the table version the graph was built from.
func (g *Graph) Version() uint64 { return g.version }

// RoutingGroupOf returns a server's routing group.
func (g *Graph) RoutingGroupOf(server string) (string, bool) {
	i, ok := g.serverRG[server]
	if !ok {
		return "", false
	}
	return g.rgNames[i], true
}

// Outbound lists the outbound connectors by name, as this graph's version
// has them (cost, Up, Causes). The slice and its connectors are shared:
// callers must not change them.
func (g *Graph) Outbound() []Connector { return g.outbound }

// ServerDown reports whether a server is marked down.
func (g *Graph) ServerDown(server string) bool { return g.down[server] }

func (g *Graph) tree(src int32) *tree {
	s := &g.spt[src]
	s.once.Do(func() { s.t = g.dijkstra(src) })
	return s.t
}

// dijkstra computes lowest-cost paths from src; equal costs break on fewer
// hops, then on the lower-named predecessor (deterministic, R9).
func (g *Graph) dijkstra(src int32) *tree {
	n := len(g.rgNames)
	type work struct{ dist, hops, prev, via int32 } // via: connector index into the node
	w := make([]work, n)
	for i := range w {
		w[i] = work{inf, inf, -1, -1}
	}
	w[src].dist, w[src].hops = 0, 0
	h := &heap{}
	h.push(item{node: src})
	done := make([]bool, n)
	for h.len() > 0 {
		it := h.pop()
		u := it.node
		if done[u] {
			continue
		}
		done[u] = true
		for _, e := range g.adj[u] {
			if done[e.to] {
				continue
			}
			nd, nh := w[u].dist+e.cost, w[u].hops+1
			if v := &w[e.to]; nd < v.dist || (nd == v.dist && (nh < v.hops || (nh == v.hops && u < v.prev))) {
				*v = work{nd, nh, u, e.conn}
				h.push(item{node: e.to, dist: nd, hops: nh})
			}
		}
	}
	t := &tree{n: make([]tnode, n), reach: make([]uint64, (n+63)/64)}
	// Paths by increasing hops, so a group's predecessor's path is laid
	// out before its own: path(v) = path(prev(v)) + via(v).
	byHops := make([]int32, 0, n)
	total := 0
	for i, v := range w {
		t.n[i] = tnode{v.dist, v.hops, -1}
		if v.dist != inf {
			t.reach[i/64] |= 1 << (i % 64)
			byHops = append(byHops, int32(i))
			total += int(v.hops)
		}
	}
	slices.SortFunc(byHops, func(a, b int32) int { return cmp.Compare(w[a].hops, w[b].hops) })
	t.path = make([]int32, 0, total)
	for _, v := range byHops {
		t.n[v].off = int32(len(t.path))
		if v == src {
			continue
		}
		p := t.n[w[v].prev]
		t.path = append(t.path, t.path[p.off:p.off+p.hops]...)
		t.path = append(t.path, w[v].via)
	}
	return t
}

// RGCost is the lowest cost and its hop count from one routing group to
// another over up connectors; ok is false when there is no such path.
func (g *Graph) RGCost(fromRG, toRG string) (cost, hops int, ok bool) {
	a, okA := g.rgIndex[fromRG]
	b, okB := g.rgIndex[toRG]
	if !okA || !okB {
		return 0, 0, false
	}
	if a == b {
		return 0, 0, true
	}
	if v := g.tree(a).n[b]; v.dist != inf {
		return int(v.dist), int(v.hops), true
	}
	return 0, 0, false
}

// Reachable reports whether mail can go from one server to another now:
// the target is up and a path of usable connectors joins their routing
// groups (R6b, R10).
func (g *Graph) Reachable(fromServer, toServer string) bool {
	if fromServer == toServer {
		return true
	}
	if g.down[toServer] {
		return false
	}
	a, okA := g.serverRG[fromServer]
	b, okB := g.serverRG[toServer]
	if !okA || !okB {
		return false
	}
	return a == b || g.tree(a).n[b].dist != inf
}

// Path is a server-level route.
type Path struct {
	// Servers runs from the source to the target, bridgeheads included,
	// without repeats.
	Servers []string
	// Connectors crossed, in order.
	Connectors []string
	Cost       int
}

// Path returns the route from one server to another: directly within a
// routing group, else bridgehead to bridgehead along the lowest-cost
// routing-group path (R13).
func (g *Graph) Path(fromServer, toServer string) (Path, bool) {
	if fromServer == toServer {
		return Path{Servers: []string{fromServer}}, true
	}
	from, okF := g.ids.id[fromServer]
	to, okT := g.ids.id[toServer]
	if !okF || !okT {
		return Path{}, false // not in link state: unreachable
	}
	var p Path
	var ok bool
	p.Servers, p.Cost, ok = g.walk(make([]string, 0, 4), &p.Connectors, from, to)
	if !ok {
		return Path{}, false
	}
	return p, true
}

// NextHop is the next server on the path from one server to another.
func (g *Graph) NextHop(fromServer, toServer string) (string, bool) {
	p, ok := g.Path(fromServer, toServer)
	if !ok || len(p.Servers) < 2 {
		return "", ok && fromServer == toServer
	}
	return p.Servers[1], true
}

// heap is a binary min-heap ordered by (dist, hops, node).
type item struct{ node, dist, hops int32 }

type heap struct{ a []item }

func (h *heap) len() int { return len(h.a) }

func less(x, y item) bool {
	if x.dist != y.dist {
		return x.dist < y.dist
	}
	if x.hops != y.hops {
		return x.hops < y.hops
	}
	return x.node < y.node
}

func (h *heap) push(x item) {
	h.a = append(h.a, x)
	i := len(h.a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(h.a[i], h.a[p]) {
			break
		}
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
}

func (h *heap) pop() item {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && less(h.a[l], h.a[m]) {
			m = l
		}
		if r < last && less(h.a[r], h.a[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.a[i], h.a[m] = h.a[m], h.a[i]
		i = m
	}
	return top
}

// Integer-id queries for the routing hot path (package routing's compiled
// index). Names are looked up once per graph; per decision, reachability
// and cost are array reads. Ids are specific to one Graph: a later graph
// may number routing groups differently.

// RGID returns a routing group's index in this graph.
func (g *Graph) RGID(rg string) (int32, bool) {
	i, ok := g.rgIndex[rg]
	return i, ok
}

// ServerRGID returns the index of a server's routing group in this graph;
// ok is false for a server link state does not know (it is not routable).
func (g *Graph) ServerRGID(server string) (int32, bool) {
	i, ok := g.serverRG[server]
	return i, ok
}

// CostByID is RGCost by routing-group index.
func (g *Graph) CostByID(from, to int32) (cost, hops int, ok bool) {
	if from < 0 || to < 0 || int(from) >= len(g.rgNames) || int(to) >= len(g.rgNames) {
		return 0, 0, false
	}
	if from == to {
		return 0, 0, true
	}
	if v := g.tree(from).n[to]; v.dist != inf {
		return int(v.dist), int(v.hops), true
	}
	return 0, 0, false
}

// ReachableByID reports whether routing group to can be reached from
// routing group from (CostByID's ok) from a bitset of the source's tree.
func (g *Graph) ReachableByID(from, to int32) bool {
	if from < 0 || to < 0 || int(from) >= len(g.rgNames) || int(to) >= len(g.rgNames) {
		return false
	}
	if from == to {
		return true
	}
	return g.tree(from).reach[to/64]&(1<<(to%64)) != 0
}

// Reach is the set of routing groups reachable from one (ReachFrom).
type Reach struct{ bits []uint64 }

// ReachFrom is ReachableByID(from, ·) as a value, for a caller testing many
// targets from one source: one tree lookup, then a bit test per target.
func (g *Graph) ReachFrom(from int32) Reach {
	if from < 0 || int(from) >= len(g.rgNames) {
		return Reach{}
	}
	return Reach{g.tree(from).reach}
}

// Has reports whether routing group to is reachable.
func (r Reach) Has(to int32) bool {
	return to >= 0 && int(to/64) < len(r.bits) && r.bits[to/64]&(1<<(to%64)) != 0
}

// AppendPath appends the server route from one server to another (as
// Path's Servers) to dst, skipping a server equal to dst's last, without
// building the connector list: the routing fast path's allocation-free
// Path. cost is Path's Cost.
func (g *Graph) AppendPath(dst []string, fromServer, toServer string) (out []string, cost int, ok bool) {
	if fromServer == toServer {
		return appendRoute(dst, fromServer), 0, true
	}
	from, okF := g.ids.id[fromServer]
	to, okT := g.ids.id[toServer]
	if !okF || !okT {
		return dst, 0, false
	}
	return g.walk(dst, nil, from, to)
}

// ServerID returns a server's id in this graph (servers and bridgeheads
// link state knows), for AppendPathByID.
func (g *Graph) ServerID(server string) (int32, bool) {
	i, ok := g.ids.id[server]
	return i, ok
}

// AppendPathByID is AppendPath with both servers given by ServerID: no
// name is looked up, the walk compares ids, and the names appended are
// this graph's copies.
func (g *Graph) AppendPathByID(dst []string, from, to int32) (out []string, cost int, ok bool) {
	if from < 0 || to < 0 || int(from) >= len(g.ids.names) || int(to) >= len(g.ids.names) {
		return dst, 0, false
	}
	return g.walk(dst, nil, from, to)
}

// AppendPathIDs is AppendPathByID appending server ids (ServerID) instead
// of names, skipping the source when it is dst's last: the routing hot
// path collects a decision's route as ids on its stack and turns them into
// names (ServerName) once it knows how many there are.
func (g *Graph) AppendPathIDs(dst []int32, from, to int32) (out []int32, cost int, ok bool) {
	if from < 0 || to < 0 || int(from) >= len(g.ids.names) || int(to) >= len(g.ids.names) {
		return dst, 0, false
	}
	return g.walkIDs(dst, nil, from, to)
}

// ServerName is the name of the server with id (ServerID) in this graph.
func (g *Graph) ServerName(id int32) string { return g.ids.names[id] }

// walk is Path and AppendPath for two servers of this graph: it appends
// the route's servers to dst (the source unless it repeats dst's last, then
// each bridgehead and the target unless it repeats the server before) and,
// when conns is not nil, the connectors crossed to *conns.
func (g *Graph) walk(dst []string, conns *[]string, from, to int32) ([]string, int, bool) {
	var buf [40]int32
	ids, cost, ok := g.walkIDs(buf[:0], conns, from, to)
	if !ok {
		return dst, 0, false
	}
	dst = appendRoute(dst, g.ids.names[ids[0]])
	for _, id := range ids[1:] {
		dst = append(dst, g.ids.names[id])
	}
	return dst, cost, true
}

// walkIDs is walk by server id: it appends the route's server ids to dst,
// the source unless it is dst's last.
func (g *Graph) walkIDs(dst []int32, conns *[]string, from, to int32) ([]int32, int, bool) {
	ids := g.ids
	if from == to {
		return appendID(dst, from), 0, true
	}
	if ids.down[to] {
		return dst, 0, false
	}
	a, b := ids.rg[from], ids.rg[to]
	if a < 0 || b < 0 {
		return dst, 0, false
	}
	if a == b {
		return appendID(appendID(dst, from), to), 0, true
	}
	t := g.tree(a)
	nb := t.n[b]
	if nb.dist == inf {
		return dst, 0, false
	}
	dst = appendID(dst, from)
	at, last := a, from
	for _, ci := range t.path[nb.off : nb.off+nb.hops] {
		c := &g.hops[ci]
		out, in, next := c.bhA, c.bhB, c.b
		if c.a != at {
			out, in, next = c.bhB, c.bhA, c.a
		}
		if conns != nil {
			*conns = append(*conns, g.conns[ci].name)
		}
		if out >= 0 && out != last {
			dst = append(dst, out)
			last = out
		}
		if in >= 0 && in != last {
			dst = append(dst, in)
			last = in
		}
		at = next
	}
	if to != last {
		dst = append(dst, to)
	}
	return dst, int(nb.dist), true
}

func appendID(l []int32, id int32) []int32 {
	if len(l) > 0 && l[len(l)-1] == id {
		return l
	}
	return append(l, id)
}

// appendRoute is routing's join of paths: drop a server repeating the
// last one ("" included: Path keeps its source whatever its name).
func appendRoute(l []string, s string) []string {
	if len(l) > 0 && l[len(l)-1] == s {
		return l
	}
	return append(l, s)
}

// Referrals is the graph public folder referrals use: this one without the
// connectors that forbid referrals (NoReferrals), so a replica reachable
// only across such a connector is unreachable for readers (issue 13). It is
// built once per Graph, on first use; the result shares this graph's
// version and servers.
func (g *Graph) Referrals() *Graph {
	g.referrals.Do(func() {
		filtered := false
		for _, c := range g.conns {
			if c.noReferrals {
				filtered = true
				break
			}
		}
		if !filtered {
			g.referralGraph = g
			return
		}
		r := &Graph{version: g.version, rgNames: g.rgNames, rgIndex: g.rgIndex, serverRG: g.serverRG, down: g.down, conns: g.conns, hops: g.hops, outbound: g.outbound,
			adj: make([][]edge, len(g.adj)), spt: make([]sptSlot, len(g.rgNames))}
		for i, es := range g.adj {
			for _, e := range es {
				if !g.conns[e.conn].noReferrals {
					r.adj[i] = append(r.adj[i], e)
				}
			}
		}
		r.ids = g.ids
		r.referralGraph = r
		r.referrals.Do(func() {})
		g.referralGraph = r
	})
	return g.referralGraph
}

package routing

import (
	"sync/atomic"
	"time"

	"pfrouter/directory"
	"pfrouter/linkstate"
)

// bound is a directory index joined to one link-state graph: per directory
// server its graph routing-group id, graph server id and whether it is
// down, per directory routing group its graph id. Built once per (index,
// graph) pair (a few map lookups per server: about a millisecond for
// 10,000 servers) and kept in the index, so a decision reads arrays, not
// maps keyed by name.
type bound struct {
	g       *linkstate.Graph
	srv     []boundServer // by directory server id
	rgGraph []int32       // by directory routing-group id: graph id, -1 if unknown to link state
	rgDir   []int32       // by graph routing-group id: directory id, -1 if the directory has no such group
	noRG    int32         // directory id of the routing group named "" (-1: none), for servers link state does not know
	minAge  atomic.Pointer[minAgeText]
}

// boundServer is one directory server as link state sees it, in one
// 12-byte record: a step-1 scan reads one cache line per store.
type boundServer struct {
	rg   int32 // graph routing-group id, -1 if link state does not know the server
	id   int32 // graph server id (linkstate.Graph.ServerID), -1 if unknown
	down bool
}

// minAgeText caches Params.MinAge.String(), which allocates.
type minAgeText struct {
	d time.Duration
	s string
}

// bindings are the index's bounds to the last two graphs: the queue
// manager decides over a server's graph and public folder referrals over
// its referral graph (linkstate.Graph.Referrals); one slot would rebind on
// every alternation.
type bindings struct{ last [2]*bound }

func bind(x *directory.Index, g *linkstate.Graph) *bound {
	old, _ := x.Ext().(*bindings)
	if old != nil {
		for _, b := range old.last {
			if b != nil && b.g == g {
				return b
			}
		}
	}
	b := &bound{g: g, srv: make([]boundServer, len(x.Servers)), rgGraph: make([]int32, len(x.RoutingGroups))}
	for i, s := range x.Servers {
		bs := boundServer{rg: -1, id: -1, down: g.ServerDown(s)}
		if rg, ok := g.ServerRGID(s); ok {
			bs.rg = rg
		}
		if id, ok := g.ServerID(s); ok {
			bs.id = id
		}
		b.srv[i] = bs
	}
	b.noRG = -1
	for i, rg := range x.RoutingGroups {
		b.rgGraph[i] = -1
		if id, ok := g.RGID(rg); ok {
			b.rgGraph[i] = id
			for int(id) >= len(b.rgDir) {
				b.rgDir = append(b.rgDir, -1)
			}
			b.rgDir[id] = int32(i)
		}
		if rg == "" {
			b.noRG = int32(i)
		}
	}
	// Concurrent deciders may each build one; any of them is right.
	nb := &bindings{last: [2]*bound{b}}
	if old != nil {
		nb.last[1] = old.last[0]
	}
	x.SetExt(nb)
	return b
}

// reach is Graph.Reachable(from, to) for from != to, with from given by
// its graph routing-group id (-1: unknown to link state) and the set of
// groups reachable from it, and to by its directory server id.
func (b *bound) reach(fromRG int32, r linkstate.Reach, to int32) bool {
	s := &b.srv[to]
	if s.down || s.rg < 0 || fromRG < 0 {
		return false
	}
	return s.rg == fromRG || r.Has(s.rg)
}

// appendPath is Graph.AppendPath from the server of view v to directory
// server to, as route ids (view.enc): by graph server ids when link state
// knows both (no name is looked up), else, as AppendPath by name, only a
// server to itself.
func (b *bound) appendPath(x *directory.Index, dst []int32, v view, to int32) ([]int32, int, bool) {
	if v.gid >= 0 && b.srv[to].id >= 0 {
		return b.g.AppendPathIDs(dst, v.gid, b.srv[to].id)
	}
	if v.server == x.Servers[to] {
		if len(dst) == 0 || dst[len(dst)-1] != v.enc() {
			dst = append(dst, v.enc())
		}
		return dst, 0, true
	}
	return dst, 0, false
}

// A route being decided is a list of ids: a link-state server id (>= 0);
// for a server link state does not know, -2 minus its directory id; -1
// for the deciding server when neither knows it. One server has one id,
// so consecutive repeats are dropped by comparing ids, as Graph.AppendPath
// compares names.
func (v view) enc() int32 {
	switch {
	case v.gid >= 0:
		return v.gid
	case v.sid >= 0:
		return -2 - v.sid
	}
	return -1
}

// names appends the servers of a route of ids (at: the deciding server's
// name, for id -1) to dst.
func (b *bound) names(x *directory.Index, dst []string, route []int32, at string) []string {
	for _, id := range route {
		switch {
		case id >= 0:
			dst = append(dst, b.g.ServerName(id))
		case id == -1:
			dst = append(dst, at)
		default:
			dst = append(dst, x.Servers[-2-id])
		}
	}
	return dst
}

func (b *bound) minAgeString(d time.Duration) string {
	if c := b.minAge.Load(); c != nil && c.d == d {
		return c.s
	}
	c := &minAgeText{d, d.String()}
	b.minAge.Store(c)
	return c.s
}

// view is a deciding server's position: its ids in the index and graph.
type view struct {
	server  string
	sid     int32 // directory server id, -1 if not a directory server
	gid     int32 // link-state server id, -1 if unknown
	graphRG int32 // link-state routing-group id, -1 if unknown
	dirRG   int32 // directory routing-group id of its link-state routing group, -1 if none
}

func viewOf(x *directory.Index, b *bound, server string) view {
	if i, ok := x.ServerID(server); ok {
		return viewOfID(x, b, i)
	}
	v := view{server: server, sid: -1, gid: -1, graphRG: -1, dirRG: b.noRG}
	if i, ok := b.g.ServerRGID(server); ok {
		v.graphRG = i
		v.dirRG = b.dirRG(i)
	}
	if i, ok := b.g.ServerID(server); ok {
		v.gid = i
	}
	return v
}

// viewOfID is viewOf for a directory server given by id.
func viewOfID(x *directory.Index, b *bound, sid int32) view {
	s := &b.srv[sid]
	v := view{server: x.Servers[sid], sid: sid, gid: s.id, graphRG: s.rg, dirRG: b.noRG}
	// Step 1 and 2 compare the store's directory routing group with the
	// server's link-state one by name ("" when link state does not know
	// the server).
	if v.graphRG >= 0 {
		v.dirRG = b.dirRG(v.graphRG)
	}
	return v
}

func (b *bound) dirRG(graphRG int32) int32 {
	if int(graphRG) < len(b.rgDir) {
		return b.rgDir[graphRG]
	}
	return -1
}

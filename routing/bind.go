package routing

import (
	"sync/atomic"
	"time"

	"pfrouter/directory"
	"pfrouter/linkstate"
)

// bound is a directory index joined to one link-state graph: per directory
// server its graph routing-group id and whether it is down, per directory
// routing group its graph id. Built once per (index, graph) pair (a few
// map lookups per server: about a millisecond for 10,000 servers) and kept
// in the index, so a decision reads arrays, not maps keyed by name.
type bound struct {
	g       *linkstate.Graph
	srvRG   []int32 // by directory server id: graph routing-group id, -1 if link state does not know the server
	down    []bool  // by directory server id
	rgGraph []int32 // by directory routing-group id: graph id, -1 if unknown to link state
	rgDir   []int32 // by graph routing-group id: directory id, -1 if the directory has no such group
	noRG    int32   // directory id of the routing group named "" (-1: none), for servers link state does not know
	minAge  atomic.Pointer[minAgeText]
}

// minAgeText caches Params.MinAge.String(), which allocates.
type minAgeText struct {
	d time.Duration
	s string
}

func bind(x *directory.Index, g *linkstate.Graph) *bound {
	if b, _ := x.Ext().(*bound); b != nil && b.g == g {
		return b
	}
	b := &bound{g: g, srvRG: make([]int32, len(x.Servers)), down: make([]bool, len(x.Servers)), rgGraph: make([]int32, len(x.RoutingGroups))}
	for i, s := range x.Servers {
		b.srvRG[i] = -1
		if rg, ok := g.ServerRGID(s); ok {
			b.srvRG[i] = rg
		}
		b.down[i] = g.ServerDown(s)
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
	x.SetExt(b)
	return b
}

// reach is Graph.Reachable(from, to) for from != to, with from given by
// its graph routing-group id (-1: unknown to link state) and to by its
// directory server id.
func (b *bound) reach(fromRG, to int32) bool {
	if b.down[to] {
		return false
	}
	toRG := b.srvRG[to]
	if fromRG < 0 || toRG < 0 {
		return false
	}
	if fromRG == toRG {
		return true
	}
	return b.g.ReachableByID(fromRG, toRG)
}

func (b *bound) minAgeString(d time.Duration) string {
	if c := b.minAge.Load(); c != nil && c.d == d {
		return c.s
	}
	c := &minAgeText{d, d.String()}
	b.minAge.Store(c)
	return c.s
}

// view is the deciding server's position: its ids in the index and graph.
type view struct {
	server  string
	sid     int32 // directory server id, -1 if not a directory server
	graphRG int32 // link-state routing-group id, -1 if unknown
	dirRG   int32 // directory routing-group id of its link-state routing group, -1 if none
}

func viewOf(x *directory.Index, b *bound, server string) view {
	v := view{server: server, sid: -1, graphRG: -1, dirRG: b.noRG}
	if i, ok := x.ServerID(server); ok {
		v.sid, v.graphRG = i, b.srvRG[i]
	} else if i, ok := b.g.ServerRGID(server); ok {
		v.graphRG = i
	}
	// Step 1 and 2 compare the store's directory routing group with the
	// server's link-state one by name ("" when link state does not know
	// the server).
	if v.graphRG >= 0 {
		v.dirRG = -1
		if int(v.graphRG) < len(b.rgDir) {
			v.dirRG = b.rgDir[v.graphRG]
		}
	}
	return v
}

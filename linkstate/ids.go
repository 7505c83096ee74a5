package linkstate

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
	t := g.tree(from)
	if t.dist[to] == inf {
		return 0, 0, false
	}
	return int(t.dist[to]), int(t.hops[to]), true
}

// AppendPath appends the server route from one server to another (as
// Path's Servers) to dst, skipping a server equal to dst's last, without
// building the connector list: the routing fast path's allocation-free
// Path. cost is Path's Cost.
func (g *Graph) AppendPath(dst []string, fromServer, toServer string) (out []string, cost int, ok bool) {
	if fromServer == toServer {
		return appendRoute(dst, fromServer), 0, true
	}
	if !g.Reachable(fromServer, toServer) {
		return dst, 0, false
	}
	a, b := g.serverRG[fromServer], g.serverRG[toServer]
	dst = appendRoute(dst, fromServer)
	if a == b {
		return appendRoute(dst, toServer), 0, true
	}
	t := g.tree(a)
	var rev [32]int32
	conns := rev[:0]
	for n := b; n != a; n = t.prev[n] {
		conns = append(conns, t.via[n])
	}
	at := a
	for i := len(conns) - 1; i >= 0; i-- {
		c := &g.conns[conns[i]]
		out, in, next := c.bhA, c.bhB, c.b
		if c.a != at {
			out, in, next = c.bhB, c.bhA, c.a
		}
		dst = appendDistinct(dst, out)
		dst = appendDistinct(dst, in)
		at = next
	}
	return appendDistinct(dst, toServer), int(t.dist[b]), true
}

// appendRoute is routing's join of paths: drop a server repeating the
// last one ("" included, unlike appendDistinct, as Path keeps its source).
func appendRoute(l []string, s string) []string {
	if len(l) > 0 && l[len(l)-1] == s {
		return l
	}
	return append(l, s)
}

package routing_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

// randOrg is a random topology: routing groups g0..gN-1, servers gI-sJ,
// connectors with random costs, states, directions and bridgeheads, some
// servers down. The hierarchy store is on g0-s0; replicas are outside g0,
// so step 2 always runs R9/R10.
type randOrg struct {
	rgs      int
	servers  [][]string // per RG
	conns    []linkstate.Connector
	down     map[string]bool
	replicas []string // server of each replica store "rep-<server>"
	yaml     string
}

func genRandOrg(r *rand.Rand) randOrg {
	o := randOrg{rgs: 2 + r.IntN(7), down: map[string]bool{}}
	for i := 0; i < o.rgs; i++ {
		n := 1 + r.IntN(3)
		var l []string
		for j := 0; j < n; j++ {
			s := fmt.Sprintf("g%d-s%d", i, j)
			l = append(l, s)
			if s != "g0-s0" && r.IntN(10) == 0 {
				o.down[s] = true
			}
		}
		o.servers = append(o.servers, l)
	}
	nc := r.IntN(o.rgs * 2)
	for k := 0; k < nc; k++ {
		a, b := r.IntN(o.rgs), r.IntN(o.rgs)
		if a == b {
			continue
		}
		c := linkstate.Connector{Name: fmt.Sprintf("c%d", k), A: fmt.Sprintf("g%d", a), B: fmt.Sprintf("g%d", b),
			Cost: 1 + r.IntN(100), Up: r.IntN(5) != 0, OneWay: r.IntN(6) == 0}
		if r.IntN(2) == 0 {
			c.BridgeheadsA = pick(r, o.servers[a])
		}
		if r.IntN(2) == 0 {
			c.BridgeheadsB = pick(r, o.servers[b])
		}
		o.conns = append(o.conns, c)
	}
	if o.rgs > 1 {
		for _, i := range r.Perm(o.rgs - 1)[:1+r.IntN(o.rgs-1)] {
			g := o.servers[i+1]
			o.replicas = append(o.replicas, g[r.IntN(len(g))])
		}
	}
	o.yaml = o.render()
	return o
}

func pick(r *rand.Rand, l []string) []string {
	var out []string
	for _, s := range l {
		if r.IntN(2) == 0 {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = []string{l[r.IntN(len(l))]}
	}
	return out
}

func (o randOrg) render() string {
	var b strings.Builder
	b.WriteString("organization: P\ndomains: [x.example]\nrouting: {store_min_age: 0}\nsites: [{name: s}]\n")
	b.WriteString("hierarchies: [{name: PF, tlh: mapi}]\nrouting_groups:\n")
	for i := 0; i < o.rgs; i++ {
		fmt.Fprintf(&b, "  - {name: g%d}\n", i)
	}
	if len(o.conns) > 0 {
		b.WriteString("connectors:\n")
	}
	for _, c := range o.conns {
		state := "up"
		if !c.Up {
			state = "down"
		}
		fmt.Fprintf(&b, "  - {name: %s, between: [%s, %s], cost: %d, state: %s, one_way: %v, bridgeheads: {", c.Name, c.A, c.B, c.Cost, state, c.OneWay)
		var parts []string
		if len(c.BridgeheadsA) > 0 {
			parts = append(parts, fmt.Sprintf("%s: [%s]", c.A, strings.Join(c.BridgeheadsA, ", ")))
		}
		if len(c.BridgeheadsB) > 0 {
			parts = append(parts, fmt.Sprintf("%s: [%s]", c.B, strings.Join(c.BridgeheadsB, ", ")))
		}
		b.WriteString(strings.Join(parts, ", ") + "}}\n")
	}
	b.WriteString("servers:\n")
	isRep := map[string]bool{}
	for _, s := range o.replicas {
		isRep[s] = true
	}
	for i, l := range o.servers {
		for _, s := range l {
			fmt.Fprintf(&b, "  - name: %s\n    site: s\n    routing_group: g%d\n    listen: {smtp: \"127.0.0.1:0\"}\n    stores:\n", s, i)
			fmt.Fprintf(&b, "      - {name: mbx-%s, kind: mailbox, created: \"2025-01-01T00:00:00Z\"}\n", s)
			if s == "g0-s0" {
				b.WriteString("      - {name: hier, kind: public, hierarchy: PF, created: \"2025-01-01T00:00:00Z\"}\n")
			}
			if isRep[s] {
				fmt.Fprintf(&b, "      - {name: rep-%s, kind: public, hierarchy: PF, created: \"2024-01-01T00:00:00Z\"}\n", s)
			}
		}
	}
	reps := make([]string, len(o.replicas))
	for i, s := range o.replicas {
		reps[i] = "rep-" + s
	}
	fmt.Fprintf(&b, "folders:\n  - {path: /F, hierarchy: PF, addresses: [f@x.example], replicas: [%s]}\n", strings.Join(reps, ", "))
	return b.String()
}

// bruteForce is Floyd–Warshall over routing groups with (cost, hops) in
// lexicographic order, on the connectors usable now (up, and a live
// bridgehead on each side that lists any).
func (o randOrg) bruteForce() [][][2]int {
	const inf = 1 << 30
	n := o.rgs
	d := make([][][2]int, n)
	for i := range d {
		d[i] = make([][2]int, n)
		for j := range d[i] {
			d[i][j] = [2]int{inf, inf}
		}
		d[i][i] = [2]int{0, 0}
	}
	live := func(bhs []string) bool {
		if len(bhs) == 0 {
			return true
		}
		for _, s := range bhs {
			if !o.down[s] {
				return true
			}
		}
		return false
	}
	less := func(x, y [2]int) bool { return x[0] < y[0] || x[0] == y[0] && x[1] < y[1] }
	for _, c := range o.conns {
		if !c.Up || !live(c.BridgeheadsA) || !live(c.BridgeheadsB) {
			continue
		}
		var a, b int
		fmt.Sscanf(c.A, "g%d", &a)
		fmt.Sscanf(c.B, "g%d", &b)
		if e := [2]int{c.Cost, 1}; less(e, d[a][b]) {
			d[a][b] = e
		}
		if e := [2]int{c.Cost, 1}; !c.OneWay && less(e, d[b][a]) {
			d[b][a] = e
		}
	}
	for k := 0; k < n; k++ {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				if d[i][k][0] == inf || d[k][j][0] == inf {
					continue
				}
				if s := [2]int{d[i][k][0] + d[k][j][0], d[i][k][1] + d[k][j][1]}; less(s, d[i][j]) {
					d[i][j] = s
				}
			}
		}
	}
	return d
}

// R9, R10, R13: on random topologies the replica step 2 picks has the
// brute-force minimum cost (and, among equal costs, the fewest hops) over
// reachable replicas; the queue outcome happens exactly when none is
// reachable; and every path's cost is the sum of the connectors it lists,
// crossed in an allowed direction from bridgehead to bridgehead.
func TestPropertyLowestCostReplica(t *testing.T) {
	r := rand.New(rand.NewPCG(20250701, 1))
	iters := 300
	if testing.Short() {
		iters = 60
	}
	delivered, queued, multiHop := 0, 0, 0
	for it := 0; it < iters; it++ {
		o := genRandOrg(r)
		org, err := config.Parse([]byte(o.yaml), "rand.yaml", ".")
		if err != nil {
			t.Fatalf("iteration %d: generated org invalid: %v\n%s", it, err, o.yaml)
		}
		dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		table, err := linkstate.FromConfig(org)
		if err != nil {
			t.Fatal(err)
		}
		for s := range o.down {
			if _, err := table.SetServerDown(s, true); err != nil {
				t.Fatal(err)
			}
		}
		g := table.Graph()
		bf := o.bruteForce()
		best := [2]int{1 << 30, 1 << 30}
		for _, s := range o.replicas {
			var rg int
			fmt.Sscanf(s, "g%d", &rg)
			if o.down[s] || bf[0][rg][0] == 1<<30 {
				continue
			}
			if c := bf[0][rg]; c[0] < best[0] || c[0] == best[0] && c[1] < best[1] {
				best = c
			}
		}
		d := routing.Decide(dir.Snapshot(), g, routing.Params{HopLimit: 30}, routing.Input{At: "g0-s0", Recipient: "f@x.example", Now: now, MessageID: "m"})
		ctx := fmt.Sprintf("iteration %d\n%s\n%s", it, o.yaml, explain(d))
		if best[0] == 1<<30 {
			if d.Outcome != routing.Queue {
				t.Fatalf("no replica reachable by brute force, got %s\n%s", d.Outcome, ctx)
			}
			queued++
			continue
		}
		if d.Outcome != routing.Deliver || d.Step2.Cost != best[0] || d.Cost != best[0] {
			t.Fatalf("want cost %d, got %s cost %d\n%s", best[0], d.Outcome, d.Cost, ctx)
		}
		for _, c := range d.Step2.Considered {
			if c.Store == d.Store && c.Hops != best[1] {
				t.Fatalf("chosen replica at %d hops, brute force %d\n%s", c.Hops, best[1], ctx)
			}
		}
		delivered++
		if best[1] > 1 {
			multiHop++
		}
		checkPath(t, table, g, "g0-s0", d.Server, ctx)
		// All pairs of servers: path cost equals the listed connectors' sum
		// and the brute-force minimum.
		for i := 0; i < o.rgs; i++ {
			for j := 0; j < o.rgs; j++ {
				from, to := o.servers[i][0], o.servers[j][len(o.servers[j])-1]
				p, ok := g.Path(from, to)
				wantOK := from == to || !o.down[to] && bf[i][j][0] != 1<<30
				if ok != wantOK {
					t.Fatalf("Path(%s,%s) ok=%v, brute force %v\n%s", from, to, ok, wantOK, ctx)
				}
				if ok && i != j && p.Cost != bf[i][j][0] {
					t.Fatalf("Path(%s,%s) cost %d, brute force %d\n%s", from, to, p.Cost, bf[i][j][0], ctx)
				}
				if ok {
					checkPath(t, table, g, from, to, ctx)
				}
			}
		}
	}
	// The generator must produce both outcomes and multi-hop choices, or
	// the property says little.
	t.Logf("delivered %d (multi-hop %d), queued %d", delivered, multiHop, queued)
	if delivered == 0 || queued == 0 || multiHop == 0 {
		t.Fatalf("degenerate generator: delivered %d, multi-hop %d, queued %d", delivered, multiHop, queued)
	}
}

// checkPath verifies a path: its cost is the sum of its connectors, the
// connectors chain from the source's routing group to the target's, each
// crossed in an allowed direction, and its servers are live bridgeheads
// where the connector lists any.
func checkPath(t *testing.T, table *linkstate.Table, g *linkstate.Graph, from, to, ctx string) {
	t.Helper()
	p, ok := g.Path(from, to)
	if !ok {
		t.Fatalf("no path %s -> %s\n%s", from, to, ctx)
	}
	if p.Servers[0] != from || p.Servers[len(p.Servers)-1] != to {
		t.Fatalf("path %v does not run %s -> %s\n%s", p.Servers, from, to, ctx)
	}
	at, _ := g.RoutingGroupOf(from)
	sum := 0
	for _, name := range p.Connectors {
		c, ok := table.Connector(name)
		if !ok || !c.Up {
			t.Fatalf("path uses unknown or down connector %s\n%s", name, ctx)
		}
		sum += c.Cost
		switch {
		case c.A == at:
			at = c.B
		case c.B == at && !c.OneWay:
			at = c.A
		default:
			t.Fatalf("connector %s crossed from %s against its direction\n%s", name, at, ctx)
		}
	}
	if toRG, _ := g.RoutingGroupOf(to); at != toRG {
		t.Fatalf("connectors %v end in %s, not %s\n%s", p.Connectors, at, toRG, ctx)
	}
	if sum != p.Cost {
		t.Fatalf("path cost %d, connectors sum to %d\n%s", p.Cost, sum, ctx)
	}
	for _, s := range p.Servers {
		if s != from && g.ServerDown(s) {
			t.Fatalf("path %v goes through down server %s\n%s", p.Servers, s, ctx)
		}
	}
}

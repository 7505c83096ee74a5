package routing

import (
	"math"
	"slices"
	"time"

	"pfrouter/directory"
	"pfrouter/hierarchy"
	"pfrouter/linkstate"
	"pfrouter/permissions"
	"pfrouter/replica"
)

// Route decides where one recipient goes: the checks, step 1 at in.At,
// then step 2 as the hierarchy store's server will run it (re-running step
// 1 there, with the store excluded, if that store does not know the folder,
// R12). It is what the queue manager calls per recipient, without the
// explanation: Step1.Skipped, Step2.Considered and Step2.Connectors stay
// empty and nothing is formatted for them. Decide is the same code with the
// explanation recorded.
//
// Step2.Path shares its backing array with Route: treat both as read-only.
func Route(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input) Decision {
	return route(snap, g, p, in, nil)
}

// Decide is Route with the explanation: every skipped hierarchy store and
// every considered replica with its reason, and the connectors of step 2's
// path. `pfrouter route`, the admin API and traced decisions use it.
func Decide(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input) Decision {
	return route(snap, g, p, in, &recorder{})
}

// RouteContinue runs on the server of the hierarchy store chosen in step 1
// when the message arrives there (R13: step 1 is not recomputed
// downstream). If the store knows the folder, step 2 picks the replica; if
// not (R12), step 1 runs again here with the store excluded.
func RouteContinue(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input, hierarchyStore string) Decision {
	return continueAt(snap, g, p, in, hierarchyStore, nil)
}

// Continue is RouteContinue with the explanation, as Decide is Route.
func Continue(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input, hierarchyStore string) Decision {
	return continueAt(snap, g, p, in, hierarchyStore, &recorder{})
}

// recorder collects a decision's explanation. A nil *recorder is off: the
// steps check for nil before formatting anything, so the queue manager's
// decisions pay neither the strings nor their allocations.
type recorder struct{}

func route(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input, rec *recorder) Decision {
	x := snap.Index()
	b := bind(x, g)
	d := Decision{Recipient: in.Recipient, At: in.At, Now: in.Now, LinkStateVersion: g.Version(), Excluded: slices.Clone(in.Excluded)}
	if c := loopCheck(p, &in); c != nil {
		return d.fail(c)
	}
	if domain, outside := outsideDomain(snap, in.Recipient); outside {
		return decideOutbound(snap, g, d, domain)
	}
	fi, ui, c := checkIndexed(x, &in)
	if c != nil {
		return d.fail(c)
	}
	if ui >= 0 {
		return decideUser(snap, g, d, x.Users[ui])
	}
	f := &x.Folders[fi]
	d.Folder, d.Hierarchy = f.Path, hierarchyName(x, f)
	minAge := b.minAgeString(p.MinAge)
	// The steps are decided on the stack, the route as server ids; what
	// the decision points to is allocated once at the end, sized for the
	// route (on the big benchmark org a route has ~30 servers).
	var s1 Step1
	var s2 Step2
	var buf [64]int32
	v := viewOf(x, b, in.At)
	route := append(buf[:0], v.enc())
	for {
		s1 = Step1{At: v.server, MinAge: minAge}
		o := step1(x, b, p, v, f, d.Excluded, in.Now, rec, &s1)
		if !o.found {
			d.keep(&s1, nil, 0)
			if o.unreachable > 0 {
				return d.wait("4.4.1", "no store holding hierarchy "+f.Hierarchy+" is reachable now (R6b); waiting for link state")
			}
			if o.pending > 0 {
				return d.wait("4.4.1", "every reachable store holding hierarchy "+f.Hierarchy+" is still replicating it; waiting")
			}
			if len(d.Excluded) > 0 {
				return d.fail(&Check{"5.4.4", "no store holding hierarchy " + f.Hierarchy + " knows folder " + f.Path + " (R12)", true})
			}
			return d.fail(&Check{"5.4.4", "no store holds hierarchy " + f.Hierarchy, true})
		}
		st := &x.Stores[o.store]
		server := x.Servers[st.ServerID]
		s1.Store, s1.Server, s1.Rule = st.Name, server, o.rule
		var cost int
		var ok bool
		if route, cost, ok = b.appendPath(x, route, v, st.ServerID); !ok {
			d.keep(&s1, nil, 0)
			return d.wait("4.4.1", "hierarchy server "+server+" is unreachable (R6b)")
		}
		d.Cost += cost
		d.HierarchyServer = server
		v = viewOfID(x, b, st.ServerID)
		if x.Knows(o.store, f) {
			break
		}
		// R12: transient; back to step 1 on that server, store excluded.
		d.Attempts = append(d.Attempts, s1)
		d.Excluded = append(d.Excluded, st.Name)
	}
	start := len(route) - 1 // route ends at the hierarchy server, where step 2's path starts
	route, ok := step2(x, b, p, v, f, in.MessageID, nil, &s2, route, rec)
	if !ok {
		d.keep(&s1, &s2, 0)
		return d.step2Failed(x, f)
	}
	names := d.keep(&s1, &s2, len(route))
	names = b.names(x, names, route, in.At)
	d.Step2.Path = names[start:len(names):len(names)]
	d.Outcome, d.Store, d.Server = Deliver, s2.Store, s2.Server
	d.Route = names
	d.Cost += s2.Cost
	return d
}

func continueAt(snap *directory.Snapshot, g *linkstate.Graph, p Params, in Input, hierarchyStore string, rec *recorder) Decision {
	x := snap.Index()
	b := bind(x, g)
	d := Decision{Recipient: in.Recipient, At: in.At, Now: in.Now, LinkStateVersion: g.Version(), Excluded: slices.Clone(in.Excluded)}
	// R14: every hop re-checks for loops, the hierarchy server included.
	if c := loopCheck(p, &in); c != nil {
		return d.fail(c)
	}
	fi, ui, c := checkIndexed(x, &Input{Recipient: in.Recipient, Sender: in.Sender, SenderUser: in.SenderUser, Size: in.Size})
	if c != nil {
		return d.fail(c)
	}
	if ui >= 0 {
		return route(snap, g, p, in, rec)
	}
	f := &x.Folders[fi]
	if si, ok := x.StoreID(hierarchyStore); !ok || !x.Knows(si, f) {
		in.Excluded = append(slices.Clone(in.Excluded), hierarchyStore)
		return route(snap, g, p, in, rec)
	}
	d.Folder, d.Hierarchy, d.HierarchyServer = f.Path, hierarchyName(x, f), in.At
	s1 := Step1{Store: hierarchyStore, Server: in.At, Rule: "carried", At: in.At, MinAge: b.minAgeString(p.MinAge)}
	if rec != nil {
		s1.Skipped = []hierarchy.Skip{}
	}
	var s2 Step2
	var buf [64]int32
	route, ok := step2(x, b, p, viewOf(x, b, in.At), f, in.MessageID, nil, &s2, buf[:0], rec)
	if !ok {
		d.keep(&s1, &s2, 0)
		return d.step2Failed(x, f)
	}
	names := b.names(x, d.keep(&s1, &s2, len(route)), route, in.At)
	d.Step2.Path = names
	d.Outcome, d.Store, d.Server, d.Route, d.Cost = Deliver, s2.Store, s2.Server, names, s2.Cost
	return d
}

// keep copies the decided steps (s2 may be nil) to the heap for d to point
// to, in one allocation with room for a route of n servers, and returns
// that route's backing slice (empty, capacity n).
func (d *Decision) keep(s1 *Step1, s2 *Step2, n int) []string {
	var p1 *Step1
	var p2 *Step2
	var route []string
	switch {
	case n <= len(steps8{}.route):
		k := &steps8{s1: *s1}
		p1, p2, route = &k.s1, &k.s2, k.route[:0]
	case n <= len(steps16{}.route):
		k := &steps16{s1: *s1}
		p1, p2, route = &k.s1, &k.s2, k.route[:0]
	case n <= len(steps32{}.route):
		k := &steps32{s1: *s1}
		p1, p2, route = &k.s1, &k.s2, k.route[:0]
	case n <= len(steps48{}.route):
		k := &steps48{s1: *s1}
		p1, p2, route = &k.s1, &k.s2, k.route[:0]
	default:
		k := &steps8{s1: *s1}
		p1, p2, route = &k.s1, &k.s2, make([]string, 0, n)
	}
	d.Step1 = p1
	if s2 != nil {
		*p2 = *s2
		d.Step2 = p2
	}
	return route
}

// stepsN are what a decision points into, allocated once: its Step1, Step2
// and the backing array of its route, in the size classes of 384, 512, 768
// and 1,024 bytes.
type steps8 struct {
	s1    Step1
	s2    Step2
	route [8]string
}

type steps16 struct {
	s1    Step1
	s2    Step2
	route [16]string
}

type steps32 struct {
	s1    Step1
	s2    Step2
	route [32]string
}

type steps48 struct {
	s1    Step1
	s2    Step2
	route [48]string
}

// hierarchyName is f.Hierarchy, from the index's hierarchy list when the
// hierarchy is defined (a line in cache, not the folder's record).
func hierarchyName(x *directory.Index, f *directory.IndexFolder) string {
	if f.HierarchyID >= 0 {
		return x.Hierarchies[f.HierarchyID].Name
	}
	return f.Hierarchy
}

func (d Decision) step2Failed(x *directory.Index, f *directory.IndexFolder) Decision {
	if len(x.Replicas(f)) == 0 {
		return d.fail(&Check{"5.4.4", "public folder " + f.Path + " has no replica (R12)", true})
	}
	return d.wait("4.4.1", "no replica of "+f.Path+" is reachable now (R10); waiting for link state")
}

// checkIndexed is CheckRecipient over the index: the folder or user id.
func checkIndexed(x *directory.Index, in *Input) (folder, user int32, c *Check) {
	fi, ui, err := x.Resolve(in.Recipient)
	if c := resolveCheck(in, err); c != nil {
		return -1, -1, c
	}
	if ui >= 0 {
		return -1, ui, nil
	}
	f := &x.Folders[fi]
	if in.SenderUser == "" && f.Open && (f.MaxMessageSize <= 0 || in.Size <= f.MaxMessageSize) {
		return fi, -1, nil // what checkFolder answers for an anonymous sender here
	}
	role := x.AnonymousRole(f)
	if in.SenderUser != "" {
		role = permissions.RoleFor(f.Permissions, in.SenderUser, true)
	}
	if c := checkFolder(f.Folder, in, role); c != nil {
		return -1, -1, c
	}
	return fi, -1, nil
}

type step1Out struct {
	found, usedYoung bool
	store            int32
	rule             string
	unreachable      int
	pending          int
}

// step1 chooses the hierarchy store (R2–R6b) over store ids: the store
// list most recently created first (R2), without excluded (R12),
// unreachable (R6b) and still-replicating stores, young ones only if
// nothing else is left (R6); then local (R3), else in the routing group
// (R4), else the first (R5). With rec it records in s.Skipped every store
// not chosen, in order, with hierarchy's reasons; it
// sets s.UsedYoung.
func step1(x *directory.Index, b *bound, p Params, v view, f *directory.IndexFolder, excluded []string, now time.Time, rec *recorder, s *Step1) step1Out {
	var out step1Out
	if rec != nil {
		s.Skipped = []hierarchy.Skip{}
	}
	if f.HierarchyID < 0 {
		return out
	}
	// young is now.Sub(created) < p.MinAge in integer nanoseconds.
	youngAfter := int64(math.MaxInt64)
	if p.MinAge > 0 {
		youngAfter = subSat(directory.UnixNanos(now), int64(p.MinAge))
	}
	young := func(st *directory.HierarchyStore) bool { return st.Created > youngAfter }
	reach := b.g.ReachFrom(v.graphRG)
	stores := x.Hierarchies[f.HierarchyID].Stores
	var buf [64]int32 // indexes into stores
	eligible := buf[:0]
	old := 0
	for i := range stores {
		st := &stores[i]
		switch {
		case len(excluded) > 0 && slices.Contains(excluded, x.Stores[st.ID].Name):
			if rec != nil {
				s.Skipped = append(s.Skipped, hierarchy.Skip{Store: x.Stores[st.ID].Name, Reason: hierarchy.ReasonExcluded})
			}
		case st.ServerID != v.sid && !b.reach(v.graphRG, reach, st.ServerID):
			out.unreachable++
			if rec != nil {
				s.Skipped = append(s.Skipped, hierarchy.Skip{Store: x.Stores[st.ID].Name, Reason: hierarchy.ReasonUnreachable(x.Servers[st.ServerID])})
			}
		case st.Pending:
			out.pending++
			if rec != nil {
				s.Skipped = append(s.Skipped, hierarchy.Skip{Store: x.Stores[st.ID].Name, Reason: hierarchy.ReasonPending})
			}
		default:
			eligible = append(eligible, int32(i))
			if !young(st) {
				old++
			}
		}
	}
	if len(eligible) == 0 {
		return out
	}
	out.usedYoung = old == 0 && p.MinAge > 0
	s.UsedYoung = out.usedYoung
	pool := eligible
	if old > 0 {
		pool = eligible[:0] // filter in place, order kept
		for _, i := range eligible {
			if !young(&stores[i]) {
				pool = append(pool, i)
			} else if rec != nil {
				s.Skipped = append(s.Skipped, hierarchy.Skip{Store: x.Stores[stores[i].ID].Name, Reason: hierarchy.ReasonYoung(x.Stores[stores[i].ID].Created, p.MinAge)})
			}
		}
	}
	out.found = true
	pick := -1
	for _, i := range pool {
		if stores[i].ServerID == v.sid {
			pick, out.rule = int(i), hierarchy.RuleLocal
			break
		}
	}
	if pick < 0 {
		for _, i := range pool {
			if stores[i].RGID == v.dirRG {
				pick, out.rule = int(i), hierarchy.RuleRoutingGroup
				break
			}
		}
	}
	if pick < 0 {
		pick, out.rule = int(pool[0]), hierarchy.RuleFirst
	}
	out.store = stores[pick].ID
	if rec != nil {
		for _, i := range pool {
			if int(i) != pick {
				s.Skipped = append(s.Skipped, hierarchy.Skip{Store: x.Stores[stores[i].ID].Name, Reason: hierarchy.PassedOver(out.rule)})
			}
		}
	}
	return out
}

type repCand struct {
	store      int32
	rank       int8
	reachable  bool
	cost, hops int
}

// step2 chooses the replica (R7–R10) over store ids, as on server: local
// (R7), else in the routing group (R8), else the reachable one of lowest
// cost, then fewest hops, then store name (R9), spread over the equal-cost
// set by message id if asked; unreachable ones never (R10), nor those on
// servers in exclude (a reader's failed servers, ChooseReplica). It fills s
// (not Path) and appends the path from server to the chosen replica's
// server to route (as ids: bound.appendPath). With rec it records s.Considered (every replica, with
// replica's reasons) and s.Connectors.
func step2(x *directory.Index, b *bound, p Params, v view, f *directory.IndexFolder, messageID string, exclude []string, s *Step2, route []int32, rec *recorder) ([]int32, bool) {
	if rec != nil {
		s.Considered = []replica.Considered{}
	}
	replicas := x.Replicas(f)
	if len(replicas) == 0 {
		return route, false
	}
	g := b.g
	reach := g.ReachFrom(v.graphRG)
	var buf [16]repCand
	cands := buf[:0]
	best := -1
	for _, si := range replicas {
		st := &x.Stores[si]
		c := repCand{store: si, rank: 2}
		switch {
		case st.ServerID == v.sid:
			c.rank, c.reachable = 0, true
		default:
			if st.RGID == v.dirRG {
				c.rank = 1
			}
			c.reachable = b.reach(v.graphRG, reach, st.ServerID) && (len(exclude) == 0 || !slices.Contains(exclude, x.Servers[st.ServerID]))
		}
		cands = append(cands, c)
		if !c.reachable {
			continue
		}
		i := len(cands) - 1
		cands[i].cost, cands[i].hops, _ = g.CostByID(v.graphRG, b.rgGraph[st.RGID])
		if best < 0 || betterFast(x, cands, i, best) {
			best = i
		}
	}
	if best < 0 {
		if rec != nil {
			s.Considered = considered(x, cands, -1, "")
		}
		return route, false
	}
	switch cands[best].rank {
	case 0:
		s.Rule = replica.RuleLocal
	case 1:
		s.Rule = replica.RuleRoutingGroup
	default:
		s.Rule = replica.RuleLowestCost
		if p.Spread {
			best = spreadFast(x, cands, best, messageID)
		}
	}
	st := &x.Stores[cands[best].store]
	s.Store, s.Server, s.Cost = st.Name, x.Servers[st.ServerID], cands[best].cost
	route, _, _ = b.appendPath(x, route, v, st.ServerID) // reachable: found
	if rec != nil {
		s.Considered = considered(x, cands, best, s.Rule)
		if path, ok := g.Path(v.server, s.Server); ok {
			s.Connectors = path.Connectors
		}
	}
	return route, true
}

// considered is step 2's explanation: every replica, reachable or not, its
// cost and hops, and why it was or was not chosen (best < 0: none was).
func considered(x *directory.Index, cs []repCand, best int, rule string) []replica.Considered {
	out := make([]replica.Considered, len(cs))
	for i, c := range cs {
		st := &x.Stores[c.store]
		con := replica.Considered{Store: st.Name, Server: x.Servers[st.ServerID], Reachable: c.reachable, Cost: c.cost, Hops: c.hops}
		switch {
		case !c.reachable:
			con.Reason = replica.ReasonUnreachable
		case i == best:
			con.Reason = replica.ReasonChosen
		default:
			con.Reason = replica.PassedOver(rule)
		}
		out[i] = con
	}
	return out
}

// betterFast orders two reachable candidates by R9: cost, then hops, then name.
func betterFast(x *directory.Index, cs []repCand, i, j int) bool {
	if cs[i].rank != cs[j].rank {
		return cs[i].rank < cs[j].rank
	}
	if cs[i].rank < 2 {
		return false
	}
	if cs[i].cost != cs[j].cost {
		return cs[i].cost < cs[j].cost
	}
	if cs[i].hops != cs[j].hops {
		return cs[i].hops < cs[j].hops
	}
	return cs[i].store < cs[j].store // Index.Stores is in name order
}

// spreadFast is replica's spread: FNV-1a of the key over the equal-cost
// remote replicas in store-name order.
func spreadFast(x *directory.Index, cs []repCand, best int, key string) int {
	var buf [16]int
	set := buf[:0]
	for i := range cs {
		if cs[i].reachable && cs[i].rank == 2 && cs[i].cost == cs[best].cost {
			set = append(set, i)
		}
	}
	if len(set) < 2 {
		return best
	}
	// Insertion sort (a handful of replicas) by store id: Index.Stores is
	// in name order.
	name := func(i int) int32 { return cs[set[i]].store }
	for i := 1; i < len(set); i++ {
		for j := i; j > 0 && name(j) < name(j-1); j-- {
			set[j], set[j-1] = set[j-1], set[j]
		}
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return set[int(h%uint32(len(set)))]
}

// subSat is a-b for b >= 0, saturating at math.MinInt64.
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

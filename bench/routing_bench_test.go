package bench_test

// "Routing core" benchmarks (see README.md): routing decisions, link-state
// recomputation and directory memory over the big synthetic organization of
// orggen.Default (1,000 routing groups, 5,000 connectors, 10,000 servers,
// 20,000 public stores, 200,000 folders). The organization is generated
// once per test binary, and only when a benchmark or the PFROUTER_BIG test
// asks for it: `go test ./bench/` alone stays fast.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"pfrouter/bench/orggen"
	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/internal/cpuclock"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

const seed = 1

var now = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// world is a built organization and a fixed set of random recipients.
type world struct {
	org    *config.Org
	dir    *directory.Directory
	table  *linkstate.Table
	params routing.Params
	inputs []routing.Input
	genDur time.Duration
	dirDur time.Duration
}

func build(org *config.Org, genDur time.Duration) (*world, error) {
	start := time.Now()
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	w := &world{org: org, dir: dir, genDur: genDur, dirDur: time.Since(start)}
	if w.table, err = linkstate.FromConfig(org); err != nil {
		return nil, fmt.Errorf("linkstate: %w", err)
	}
	w.params = routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit, Spread: org.Routing.Spread}
	// Random recipients (folders, and users if any) at random servers.
	r := rand.New(rand.NewPCG(seed, 2))
	var addrs []string
	for _, f := range org.Folders {
		addrs = append(addrs, f.Addresses...)
	}
	for _, u := range org.Users {
		addrs = append(addrs, u.Addresses...)
	}
	for i := 0; i < 1<<14; i++ {
		w.inputs = append(w.inputs, routing.Input{
			At: org.Servers[r.IntN(len(org.Servers))].Name, Recipient: addrs[r.IntN(len(addrs))],
			MessageID: fmt.Sprintf("<%d@bench.example>", i), Now: now, Size: 10 << 10,
		})
	}
	return w, nil
}

var bigWorld = sync.OnceValues(func() (*world, error) {
	start := time.Now()
	org := orggen.Generate(seed, orggen.Default)
	return build(org, time.Since(start))
})

var contosoWorld = sync.OnceValues(func() (*world, error) {
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		return nil, err
	}
	return build(org, 0)
})

func get(b testing.TB, f func() (*world, error)) *world {
	b.Helper()
	w, err := f()
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkDecide is one routing decision (R1–R17, both steps) for a random
// recipient at a random server; the snapshot and graph are taken once, as
// the queue manager takes them once per batch.
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name string
		w    func() (*world, error)
	}{{"contoso", contosoWorld}, {"big", bigWorld}} {
		b.Run(c.name, func(b *testing.B) {
			w := get(b, c.w)
			if c.name == "big" {
				b.Logf("generate %v, directory.New %v", w.genDur.Round(time.Millisecond), w.dirDur.Round(time.Millisecond))
			}
			snap, g := w.dir.Snapshot(), w.table.Graph()
			outcomes := map[routing.Outcome]int{}
			// Warm the shortest-path trees (each routing group's is computed
			// once per graph, on first use: BenchmarkDecideColdGraph measures
			// that) and count outcomes once.
			for _, in := range w.inputs {
				outcomes[routing.Decide(snap, g, w.params, in).Outcome]++
			}
			rgs := w.org.RoutingGroups
			for i, rg := range rgs {
				g.RGCost(rg.Name, rgs[(i+1)%len(rgs)].Name)
			}
			b.Logf("outcomes of %d decisions: %v", len(w.inputs), outcomes)
			b.ReportAllocs()
			cpuclock.Loop(b, func(i int) { routing.Decide(snap, g, w.params, w.inputs[i%len(w.inputs)]) })
		})
	}
}

// BenchmarkRoute is BenchmarkDecide on the queue manager's fast path
// (routing.Route: the same decision without the explanation, over the
// snapshot's compiled index). The index is built, and bound to the graph,
// before the timer starts: BenchmarkRouteIndexBuild measures that.
func BenchmarkRoute(b *testing.B) {
	for _, c := range []struct {
		name string
		w    func() (*world, error)
	}{{"contoso", contosoWorld}, {"big", bigWorld}} {
		b.Run(c.name, func(b *testing.B) {
			w := get(b, c.w)
			snap, g := w.dir.Snapshot(), w.table.Graph()
			start := time.Now()
			snap.Index()
			b.Logf("index built in %v", time.Since(start).Round(time.Millisecond))
			outcomes := map[routing.Outcome]int{}
			for _, in := range w.inputs {
				outcomes[routing.Route(snap, g, w.params, in).Outcome]++
			}
			b.Logf("outcomes of %d decisions: %v", len(w.inputs), outcomes)
			b.ReportAllocs()
			cpuclock.Loop(b, func(i int) { routing.Route(snap, g, w.params, w.inputs[i%len(w.inputs)]) })
		})
	}
}

// BenchmarkRouteColdGraph is BenchmarkDecideColdGraph on the fast path:
// a connector cost change, then one decision (binding the index to the new
// graph and computing one shortest-path tree).
func BenchmarkRouteColdGraph(b *testing.B) {
	w := get(b, bigWorld)
	snap := w.dir.Snapshot()
	snap.Index()
	conn := w.org.Connectors[0].Name
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.table.SetCost(conn, 1+i%100, "bench", now); err != nil {
			b.Fatal(err)
		}
		routing.Route(snap, w.table.Graph(), w.params, w.inputs[i%len(w.inputs)])
	}
}

// BenchmarkRouteIndexBuild is what the first decision after a directory
// change pays on the big organization: compiling the routing index.
func BenchmarkRouteIndexBuild(b *testing.B) {
	w := get(b, bigWorld)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		// A fresh directory version each time: SetSynced publishes one.
		if err := w.dir.SetSynced(w.org.Servers[0].Stores[0].Name, true); err != nil {
			b.Fatal(err)
		}
		w.dir.Snapshot().Index()
	}
}

// BenchmarkDecideColdGraph is a decision right after a link-state change:
// the first query on a new graph computes the shortest-path tree of the
// deciding server's routing group.
func BenchmarkDecideColdGraph(b *testing.B) {
	w := get(b, bigWorld)
	snap := w.dir.Snapshot()
	conn := w.org.Connectors[0].Name
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.table.SetCost(conn, 1+i%100, "bench", now); err != nil {
			b.Fatal(err)
		}
		routing.Decide(snap, w.table.Graph(), w.params, w.inputs[i%len(w.inputs)])
	}
}

// BenchmarkLinkstateRecompute: a connector cost change, then the first
// query from one source routing group (what the next message pays), or
// from every source (the whole table recomputed).
func BenchmarkLinkstateRecompute(b *testing.B) {
	w := get(b, bigWorld)
	conn := w.org.Connectors[0].Name
	rgs := w.org.RoutingGroups
	b.Run("one-source", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := w.table.SetCost(conn, 1+i%100, "bench", now); err != nil {
				b.Fatal(err)
			}
			w.table.Graph().RGCost(rgs[i%len(rgs)].Name, rgs[(i*7+1)%len(rgs)].Name)
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
	})
	b.Run("set-cost-only", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := w.table.SetCost(conn, 1+i%100, "bench", now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("all-sources", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := w.table.SetCost(conn, 1+i%100, "bench", now); err != nil {
				b.Fatal(err)
			}
			g := w.table.Graph()
			for _, rg := range rgs {
				g.RGCost(rg.Name, rgs[0].Name)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
	})
}

// heapMiB is the live heap after a full collection.
func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// measureDirectory generates the big org and builds its directory and
// routing index, returning the heap held by each.
func measureDirectory(tb testing.TB) (orgMiB, dirMiB, indexMiB float64, genDur, dirDur, indexDur time.Duration) {
	base := heapMiB()
	start := time.Now()
	org := orggen.Generate(seed, orggen.Default)
	genDur = time.Since(start)
	withOrg := heapMiB()
	start = time.Now()
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	dirDur = time.Since(start)
	withDir := heapMiB()
	start = time.Now()
	snap := dir.Snapshot()
	snap.Index()
	indexDur = time.Since(start)
	withIndex := heapMiB()
	runtime.KeepAlive(org)
	runtime.KeepAlive(dir)
	runtime.KeepAlive(snap)
	return withOrg - base, withDir - withOrg, withIndex - withDir, genDur, dirDur, indexDur
}

// BenchmarkDirectoryBuild builds the big directory and reports its heap.
func BenchmarkDirectoryBuild(b *testing.B) {
	for i := 0; i < b.N; i++ {
		orgMiB, dirMiB, indexMiB, genDur, dirDur, _ := measureDirectory(b)
		b.ReportMetric(dirMiB, "dir-MiB")
		b.ReportMetric(indexMiB, "index-MiB")
		b.ReportMetric(orgMiB, "org-MiB")
		b.ReportMetric(float64(genDur.Milliseconds()), "gen-ms")
		b.ReportMetric(float64(dirDur.Milliseconds()), "dir-ms")
	}
}

// TestDirectoryMemory logs the directory's heap for the big organization
// (target: < 1 GiB). It is slow and large: it runs only with PFROUTER_BIG=1
// and never in -short mode.
func TestDirectoryMemory(t *testing.T) {
	if testing.Short() || os.Getenv("PFROUTER_BIG") != "1" {
		t.Skip("big-org memory measurement: set PFROUTER_BIG=1 (and no -short) to run")
	}
	orgMiB, dirMiB, indexMiB, genDur, dirDur, indexDur := measureDirectory(t)
	t.Logf("org %.0f MiB (generated in %v); directory %.0f MiB (built in %v); routing index %.0f MiB (built in %v); directory+index %.0f MiB",
		orgMiB, genDur.Round(time.Millisecond), dirMiB, dirDur.Round(time.Millisecond), indexMiB, indexDur.Round(time.Millisecond), dirMiB+indexMiB)
}

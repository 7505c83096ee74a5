// Package orggen generates large synthetic organizations for benchmarks:
// thousands of routing groups joined by connectors with random costs,
// servers with public stores, hierarchies and hundreds of thousands of
// mail-enabled folders with replicas. The same seed and Params always give
// the same organization.
//
// Generate builds the *config.Org in memory (YAML for 200,000 folders would
// take longer to parse than the benchmarks run) with config's defaults
// filled in as config.Parse would; the package tests check, on small
// organizations, that YAML rendered from a generated Org passes
// config.Parse and parses back to the same Org. Its neighbours: package
// bench measures routing, linkstate and directory over what it builds.
package orggen

import (
	"fmt"
	"math/rand/v2"
	"time"

	"pfrouter/config"
)

// Params sizes an organization. Zero fields take the Default values.
type Params struct {
	RoutingGroups int
	Connectors    int // at least RoutingGroups-1: a spanning tree keeps every group reachable
	Servers       int // spread round-robin over routing groups
	PublicStores  int // spread round-robin over servers
	Hierarchies   int // public stores are spread round-robin over hierarchies; the first is the MAPI tree
	Folders       int // spread round-robin over hierarchies
	MaxReplicas   int // each folder has 1..MaxReplicas replicas in stores of its hierarchy
	Users         int // each with a mailbox store on a round-robin server
	// YoungPercent of public stores are created less than 48h before Now
	// (R6); DownPercent of connectors are down (R10).
	YoungPercent, DownPercent int
	// Now anchors created times; zero means 2025-07-01T00:00:00Z.
	Now time.Time
}

// Default is the organization of the "Routing core" issue's targets.
var Default = Params{
	RoutingGroups: 1000, Connectors: 5000, Servers: 10000, PublicStores: 20000,
	Hierarchies: 1000, Folders: 200000, MaxReplicas: 3, Users: 0, YoungPercent: 5, DownPercent: 2,
}

// Domain is the accepted domain of generated organizations.
const Domain = "bench.example"

func (p Params) withDefaults() Params {
	d := Default
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&p.RoutingGroups, d.RoutingGroups)
	set(&p.Connectors, d.Connectors)
	set(&p.Servers, d.Servers)
	set(&p.PublicStores, d.PublicStores)
	set(&p.Hierarchies, d.Hierarchies)
	set(&p.Folders, d.Folders)
	set(&p.MaxReplicas, d.MaxReplicas)
	if p.Now.IsZero() {
		p.Now = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	}
	return p
}

// Check reports parameters that cannot make a valid organization.
func (p Params) Check() error {
	p = p.withDefaults()
	switch {
	case p.RoutingGroups < 1 || p.Servers < p.RoutingGroups:
		return fmt.Errorf("orggen: need 1 <= routing groups (%d) <= servers (%d)", p.RoutingGroups, p.Servers)
	case p.Connectors < p.RoutingGroups-1:
		return fmt.Errorf("orggen: %d connectors cannot join %d routing groups (need %d)", p.Connectors, p.RoutingGroups, p.RoutingGroups-1)
	case p.Connectors > 0 && p.RoutingGroups < 2:
		return fmt.Errorf("orggen: connectors need at least two routing groups")
	case p.Hierarchies < 1 || p.PublicStores < p.Hierarchies:
		return fmt.Errorf("orggen: need 1 <= hierarchies (%d) <= public stores (%d)", p.Hierarchies, p.PublicStores)
	case p.YoungPercent < 0 || p.YoungPercent > 100 || p.DownPercent < 0 || p.DownPercent > 100:
		return fmt.Errorf("orggen: percentages must be within 0..100")
	}
	return nil
}

// Names used by generated organizations, so benchmarks can address parts.
func RoutingGroupName(i int) string { return fmt.Sprintf("rg%04d", i) }
func ServerName(i int) string       { return fmt.Sprintf("srv%05d", i) }
func StoreName(i int) string        { return fmt.Sprintf("pub%05d", i) }
func HierarchyName(i int) string    { return fmt.Sprintf("H%04d", i) }
func FolderAddress(i int) string    { return fmt.Sprintf("f%06d@%s", i, Domain) }

// Generate builds an organization. It panics only on parameters Check
// refuses.
func Generate(seed uint64, p Params) *config.Org {
	if err := p.Check(); err != nil {
		panic(err)
	}
	p = p.withDefaults()
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	org := &config.Org{
		Organization: "Bench", Domains: []config.Domain{{Name: Domain}}, Mode: config.ModeMixed,
		Secret: "bench-secret-0123456789abcdef0123456789",
	}

	nSites := max(1, p.RoutingGroups/10)
	for i := 0; i < nSites; i++ {
		org.Sites = append(org.Sites, config.Site{Name: fmt.Sprintf("site%03d", i)})
	}
	org.RoutingGroups = make([]config.RoutingGroup, p.RoutingGroups)
	for i := range org.RoutingGroups {
		org.RoutingGroups[i].Name = RoutingGroupName(i)
	}
	// Servers round-robin over routing groups: rgServers[g] lists group g's.
	rgServers := make([][]int, p.RoutingGroups)
	org.Servers = make([]config.Server, p.Servers)
	for i := range org.Servers {
		g := i % p.RoutingGroups
		rgServers[g] = append(rgServers[g], i)
		org.Servers[i] = config.Server{
			Name: ServerName(i), Site: org.Sites[g%nSites].Name, RoutingGroup: RoutingGroupName(g),
			Listen: config.Listen{SMTP: "127.0.0.1:0"},
		}
	}
	org.Connectors = make([]config.Connector, 0, p.Connectors)
	bridgeheads := func(g int) []string {
		l := rgServers[g]
		n := 1 + r.IntN(2)
		out := make([]string, 0, n)
		for k := 0; k < n && k < len(l); k++ {
			out = append(out, ServerName(l[(k+r.IntN(len(l)))%len(l)]))
		}
		if len(out) == 2 && out[0] == out[1] {
			out = out[:1]
		}
		return out
	}
	addConn := func(a, b int) {
		state := "up"
		if r.IntN(100) < p.DownPercent {
			state = "down"
		}
		ra, rb := RoutingGroupName(a), RoutingGroupName(b)
		org.Connectors = append(org.Connectors, config.Connector{
			Name: fmt.Sprintf("c%05d", len(org.Connectors)), Between: []string{ra, rb}, Cost: 1 + r.IntN(100), State: state,
			Bridgeheads: map[string][]string{ra: bridgeheads(a), rb: bridgeheads(b)},
		})
	}
	for g := 1; g < p.RoutingGroups && len(org.Connectors) < p.Connectors; g++ {
		addConn(r.IntN(g), g) // spanning tree: every group joins an earlier one
	}
	for len(org.Connectors) < p.Connectors {
		a, b := r.IntN(p.RoutingGroups), r.IntN(p.RoutingGroups)
		if a != b {
			addConn(a, b)
		}
	}

	org.Hierarchies = make([]config.Hierarchy, p.Hierarchies)
	for i := range org.Hierarchies {
		org.Hierarchies[i] = config.Hierarchy{Name: HierarchyName(i), TLH: config.TLHApplication}
	}
	org.Hierarchies[0].TLH = config.TLHMapi
	// Stores: store k on server k % Servers, holding hierarchy k % Hierarchies.
	hierStores := make([][]int, p.Hierarchies)
	for k := 0; k < p.PublicStores; k++ {
		s := &org.Servers[k%p.Servers]
		h := k % p.Hierarchies
		hierStores[h] = append(hierStores[h], k)
		age := time.Duration(72+r.IntN(2*365*24)) * time.Hour
		if r.IntN(100) < p.YoungPercent {
			age = time.Duration(r.IntN(47*60)) * time.Minute
		}
		s.Stores = append(s.Stores, config.Store{Name: StoreName(k), Kind: config.StorePublic, Hierarchy: HierarchyName(h), Created: p.Now.Add(-age)})
	}
	for i := 0; i < p.Users; i++ {
		s := &org.Servers[i%p.Servers]
		mbx := "mbx-" + s.Name
		if len(s.Stores) == 0 || s.Stores[len(s.Stores)-1].Name != mbx {
			s.Stores = append(s.Stores, config.Store{Name: mbx, Kind: config.StoreMailbox, Created: p.Now.Add(-365 * 24 * time.Hour)})
		}
		org.Users = append(org.Users, config.User{Name: fmt.Sprintf("user%06d", i), Addresses: []string{fmt.Sprintf("u%06d@%s", i, Domain)},
			MailboxStore: mbx, Password: "pw", Kind: config.KindUser})
	}

	enabled := true
	org.Folders = make([]config.Folder, p.Folders)
	for i := range org.Folders {
		h := i % p.Hierarchies
		stores := hierStores[h]
		n := 1 + r.IntN(p.MaxReplicas)
		reps := make([]string, 0, n)
		for _, j := range r.Perm(len(stores))[:min(n, len(stores))] {
			reps = append(reps, StoreName(stores[j]))
		}
		org.Folders[i] = config.Folder{
			Path: fmt.Sprintf("/F%06d", i), Hierarchy: HierarchyName(h), MailEnabled: &enabled, CreatedMode: config.ModeMixed,
			Addresses: []string{FolderAddress(i)}, Replicas: reps,
			// A new folder's default permissions, one map per folder as
			// config.Parse gives them (R17).
			Permissions: map[string]string{"Default": "Author", "Anonymous": "Contributor"},
		}
	}
	// config.Parse would apply the same defaults; applying them here keeps a
	// generated org equal to its parsed form as config grows new keys.
	org.ApplyDefaults()
	return org
}

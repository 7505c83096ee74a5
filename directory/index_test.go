package directory_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"pfrouter/bench/orggen"
	"pfrouter/directory"
)

// TestR1IndexResolveMatchesSnapshot: the routing index's address table
// (Index.Resolve) answers every address as the directory does
// (Snapshot.Resolve, R1): the same folder or user for every address of a
// generated organization and of contoso, in any case, and the same error
// for unknown addresses (one letter changed, longer, shorter), other
// domains and bad syntax.
func TestR1IndexResolveMatchesSnapshot(t *testing.T) {
	org := orggen.Generate(3, orggen.Params{RoutingGroups: 4, Connectors: 6, Servers: 8, PublicStores: 16, Hierarchies: 3, Folders: 3000, MaxReplicas: 3, Users: 200})
	gen, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*directory.Directory{contoso(t), gen} {
		s := d.Snapshot()
		x := s.Index()
		var addrs []string
		for _, f := range s.Folders() {
			addrs = append(addrs, f.Addresses...)
		}
		for _, u := range s.Users() {
			addrs = append(addrs, u.Addresses...)
		}
		if len(addrs) < 5 {
			t.Fatalf("only %d addresses", len(addrs))
		}
		r := rand.New(rand.NewPCG(1, 2))
		var probes []string
		for _, a := range addrs {
			probes = append(probes, a, strings.ToUpper(a), "x"+a, a[1:], strings.Replace(a, "@", "-@", 1))
			i := r.IntN(strings.IndexByte(a, '@'))
			probes = append(probes, a[:i]+string(rune(a[i]^1))+a[i+1:])
		}
		probes = append(probes, "", "@", "nobody@", "@contoso.example", "a@other.example", "nobody@contoso.example", "nobody@"+orggen.Domain)
		found := 0
		for _, a := range probes {
			e, errS := s.Resolve(a)
			fi, ui, errX := x.Resolve(a)
			switch {
			case errS != nil || errX != nil:
				if errX == nil || !errors.Is(errS, errX) { // the index's are the sentinels the directory wraps
					t.Fatalf("%q: index says %v, directory %v", a, errX, errS)
				}
			case e.Folder != nil:
				if fi < 0 || ui >= 0 || x.Folders[fi].Key != e.Folder.Key {
					t.Fatalf("%q: index gives folder %d user %d, directory folder %s", a, fi, ui, e.Folder.Key)
				}
				found++
			default:
				if ui < 0 || fi >= 0 || x.Users[ui].Name != e.User.Name {
					t.Fatalf("%q: index gives folder %d user %d, directory user %s", a, fi, ui, e.User.Name)
				}
				found++
			}
		}
		if found < 2*len(addrs) {
			t.Fatalf("only %d of %d probes found (every address and its upper case should be)", found, len(probes))
		}
	}
}

// TestIndexReplicasMatchSnapshot: a folder's replica list in the index
// (kept in the folder's record up to six, beyond that in a shared array)
// is Snapshot.Replicas' stores in order, for folders with 0 to 12 replicas
// (R7–R10 choose among them).
func TestIndexReplicasMatchSnapshot(t *testing.T) {
	org := orggen.Generate(5, orggen.Params{RoutingGroups: 4, Connectors: 6, Servers: 8, PublicStores: 48, Hierarchies: 2, Folders: 400, MaxReplicas: 12})
	org.Folders[0].Replicas = nil
	d, err := directory.New(org, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Snapshot()
	x := s.Index()
	seen := map[int]bool{}
	for i := range x.Folders {
		f := &x.Folders[i]
		var want []string
		for _, r := range s.Replicas(f.Key) {
			want = append(want, r.Store)
		}
		var got []string
		for _, si := range x.Replicas(f) {
			got = append(got, x.Stores[si].Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("folder %s: index replicas %v, directory %v", f.Key, got, want)
		}
		seen[len(got)] = true
	}
	for _, n := range []int{0, 1, 6, 7, 12} {
		if !seen[n] {
			t.Errorf("no folder with %d replicas in the test org (%v)", n, seen)
		}
	}
}

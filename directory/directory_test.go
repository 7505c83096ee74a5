package directory_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
)

var now = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

func contoso(t *testing.T) *directory.Directory {
	t.Helper()
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// R1: resolution by address and alias, case rules, accepted domains.
func TestR1Resolve(t *testing.T) {
	s := contoso(t).Snapshot()
	for addr, want := range map[string]string{
		"sales@contoso.example":    "/Sales",
		"SALES@Contoso.Example":    "/Sales",
		"announce@contoso.example": "/Sales/Announcements",
		"Announce@contoso.example": "/Sales/Announcements",
	} {
		e, err := s.Resolve(addr)
		if err != nil || e.Folder == nil || e.Folder.Path != want {
			t.Errorf("%s: %+v %v, want %s", addr, e, err, want)
		}
	}
	if e, err := s.Resolve("Alice@contoso.example"); err != nil || e.User == nil || e.User.Name != "alice" || e.User.Server != "ex1" {
		t.Errorf("user: %+v %v", e, err)
	}
	for addr, want := range map[string]error{
		"sales@fabrikam.example": directory.ErrNotAccepted,
		"nobody@contoso.example": directory.ErrUnknown,
		"sales":                  directory.ErrBadAddress,
		"sales@":                 directory.ErrBadAddress,
	} {
		if _, err := s.Resolve(addr); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", addr, err, want)
		}
	}
}

// R2: a hierarchy's stores are newest first, and a store added at runtime
// takes its place by created time; snapshots taken before keep their list.
func TestR2NewestFirstAndAddStore(t *testing.T) {
	d := contoso(t)
	names := func(s *directory.Snapshot) string {
		var l []string
		for _, st := range s.Hierarchy("Public Folders").Stores {
			l = append(l, st.Name)
		}
		return strings.Join(l, ",")
	}
	before := d.Snapshot()
	// ex4-pub has no created time: first seen now, so newest.
	if got := names(before); got != "ex4-pub,ex3-pub,ex1-pub" {
		t.Fatalf("order %s", got)
	}
	if _, err := d.AddStore(directory.Store{Name: "ex2-pub", Kind: config.StorePublic, Server: "ex2", Hierarchy: "Public Folders", Created: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if got := names(d.Snapshot()); got != "ex4-pub,ex3-pub,ex2-pub,ex1-pub" {
		t.Fatalf("after AddStore %s", got)
	}
	if got := names(before); got != "ex4-pub,ex3-pub,ex1-pub" {
		t.Fatalf("old snapshot changed: %s", got)
	}
	st := d.Snapshot().Store("ex2-pub")
	// A store added at runtime is as synced as the caller says: here not
	// yet (its hierarchy copy is still replicating, R12).
	if st == nil || st.RoutingGroup != "rg-tokyo" || st.Synced {
		t.Fatalf("added store %+v", st)
	}
	for _, bad := range []directory.Store{
		{Name: "ex1-pub", Kind: config.StorePublic, Server: "ex1", Hierarchy: "Public Folders"},
		{Name: "x", Kind: config.StorePublic, Server: "nope", Hierarchy: "Public Folders"},
		{Name: "y", Kind: config.StorePublic, Server: "ex1", Hierarchy: "Nope"},
		{Name: "z", Kind: "tape", Server: "ex1"},
	} {
		if _, err := d.AddStore(bad); err == nil {
			t.Errorf("AddStore(%+v) accepted", bad)
		}
	}
}

// R12: Knows follows the store's sync state; replicas can be added.
func TestKnowsAndReplicas(t *testing.T) {
	d := contoso(t)
	key := directory.FolderKey("Public Folders", "/Sales")
	if !d.Snapshot().Knows("ex3-pub", key) {
		t.Fatal("synced store does not know its folder")
	}
	if d.Snapshot().Knows("ex3-proj", key) {
		t.Fatal("store of another hierarchy knows the folder")
	}
	if err := d.SetSynced("ex3-pub", false); err != nil {
		t.Fatal(err)
	}
	s := d.Snapshot()
	if s.Knows("ex3-pub", key) {
		t.Fatal("unsynced store knows the folder")
	}
	for _, st := range s.Hierarchy("Public Folders").Stores {
		if st.Name == "ex3-pub" && st.Synced {
			t.Fatal("hierarchy list not updated by SetSynced")
		}
	}
	if err := d.AddReplica("Public Folders", "/Sales", "ex1-pub"); err != nil {
		t.Fatal(err)
	}
	var reps []string
	for _, r := range d.Snapshot().Replicas(key) {
		reps = append(reps, r.Store)
	}
	if strings.Join(reps, ",") != "ex1-pub,ex3-pub" {
		t.Fatalf("replicas %v", reps)
	}
	for _, bad := range [][3]string{{"Public Folders", "/Nope", "ex1-pub"}, {"Public Folders", "/Sales", "ex3-proj"}, {"Public Folders", "/Sales", "nope"}} {
		if err := d.AddReplica(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("AddReplica%v accepted", bad)
		}
	}
}

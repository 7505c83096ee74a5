package directory_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"pfrouter/directory"
	"pfrouter/permissions"
)

const pf = "Public Folders"

// Issue 12, hierarchy replication: a folder renamed at run time takes the
// folders below it, its addresses (alias included) and its replicas along;
// the old keys say where they went; renames applied in either order end
// the same (the newer wins), and a delete is final whatever arrives after.
func TestRenameAndDeleteFolders(t *testing.T) {
	sales, ann := directory.FolderKey(pf, "/Sales"), directory.FolderKey(pf, "/Sales/Announcements")
	older := func(d *directory.Directory) error {
		return d.RenameFolders(map[string]string{sales: "/Old", ann: "/Old/Announcements"}, directory.Rev{Version: 5, Origin: "ex1"})
	}
	newer := func(d *directory.Directory) error {
		return d.RenameFolders(map[string]string{sales: "/Revenue", ann: "/Revenue/News"}, directory.Rev{Version: 7, Origin: "ex3"})
	}
	for _, order := range []string{"older first", "newer first"} {
		d := contoso(t)
		steps := []func(*directory.Directory) error{older, newer}
		if order == "newer first" {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(d); err != nil {
				t.Fatalf("%s: %v", order, err)
			}
		}
		s := d.Snapshot()
		if s.Folder(sales) != nil || s.Folder(ann) != nil {
			t.Fatalf("%s: the old keys still name folders", order)
		}
		rev := s.Folder(directory.FolderKey(pf, "/Revenue"))
		news := s.Folder(directory.FolderKey(pf, "/Revenue/News"))
		if rev == nil || news == nil || rev.ID != sales || news.ID != ann {
			t.Fatalf("%s: renamed folders %+v %+v", order, rev, news)
		}
		if e, err := s.Resolve("sales@contoso.example"); err != nil || e.Folder == nil || e.Folder.Path != "/Revenue" {
			t.Fatalf("%s: sales@ resolves to %+v %v", order, e, err)
		}
		if e, err := s.Resolve("announce@contoso.example"); err != nil || e.Folder == nil || e.Folder.Path != "/Revenue/News" {
			t.Fatalf("%s: the alias resolves to %+v %v", order, e, err)
		}
		var stores []string
		for _, r := range s.Replicas(news.Key) {
			stores = append(stores, r.Store)
		}
		if !slices.Equal(stores, []string{"ex1-pub", "ex3-pub"}) || len(s.Replicas(ann)) != 0 {
			t.Fatalf("%s: replicas of /Revenue/News %v, old key %d", order, stores, len(s.Replicas(ann)))
		}
		moved := map[string]string{}
		for _, m := range s.MovedFolders() {
			moved[m.Key] = m.To
		}
		if moved[sales] != rev.Key || moved[ann] != news.Key {
			t.Fatalf("%s: moved keys %v", order, moved)
		}
		// Delete wins: a rename arriving later changes nothing.
		if err := d.DeleteFolders([]string{sales, ann}); err != nil {
			t.Fatal(err)
		}
		if err := d.RenameFolders(map[string]string{sales: "/Back"}, directory.Rev{Version: 99, Origin: "ex4"}); err != nil {
			t.Fatal(err)
		}
		s = d.Snapshot()
		if s.FolderByID(sales) != nil || s.Folder(directory.FolderKey(pf, "/Back")) != nil || len(s.Replicas(news.Key)) != 0 {
			t.Fatalf("%s: a deleted folder came back", order)
		}
		if _, err := s.Resolve("sales@contoso.example"); err == nil {
			t.Fatalf("%s: sales@ still resolves after the delete", order)
		}
		for _, m := range s.MovedFolders() {
			moved[m.Key] = m.To
		}
		for _, k := range []string{sales, ann, rev.Key, news.Key} {
			if to, ok := moved[k]; !ok || to != "" {
				t.Fatalf("%s: %s leads to %q, want deleted", order, k, to)
			}
		}
	}
}

// Two folders of one rename may trade places.
func TestRenameFoldersSwap(t *testing.T) {
	d := contoso(t)
	eng, board := directory.FolderKey(pf, "/Engineering"), directory.FolderKey(pf, "/Board")
	if err := d.RenameFolders(map[string]string{eng: "/Board", board: "/Engineering"}, directory.Rev{Version: 1, Origin: "ex1"}); err != nil {
		t.Fatal(err)
	}
	s := d.Snapshot()
	if f := s.Folder(board); f == nil || f.ID != eng {
		t.Fatalf("/Board is %+v, want the former /Engineering", f)
	}
	if f := s.Folder(eng); f == nil || f.ID != board {
		t.Fatalf("/Engineering is %+v, want the former /Board", f)
	}
}

// hierarchy is what a directory says of every folder: identity -> path,
// and the replica lists by identity.
func hierarchy(d *directory.Directory) map[string]string {
	out := map[string]string{}
	s := d.Snapshot()
	for _, f := range s.FoldersOf(pf) {
		out[f.ID] = f.Path
		for _, r := range s.Replicas(f.Key) {
			out[f.ID+"|"+r.Store] = f.Path
		}
	}
	return out
}

// Issue 12 (concurrent renames onto one path): two servers each rename a
// different folder to /Target before hearing of the other's rename. Every
// order of arrival gives the same hierarchy: the newer rename holds
// /Target, the other folder sits at /Target~<digest of its identity>, with
// its replicas and addresses (nothing is lost). When the holder moves on
// or is deleted, the waiting folder takes the path, again in any order.
func TestConcurrentRenamesOntoOnePathConverge(t *testing.T) {
	eng, board, archive := directory.FolderKey(pf, "/Engineering"), directory.FolderKey(pf, "/Board"), directory.FolderKey(pf, "/Archive")
	type change struct {
		name string
		do   func(*directory.Directory) error
	}
	rename := func(id, to string, v uint64, origin string) change {
		return change{id + "->" + to, func(d *directory.Directory) error {
			return d.RenameFolders(map[string]string{id: to}, directory.Rev{Version: v, Origin: origin})
		}}
	}
	first := rename(eng, "/Target", 5, "ex1")    // older
	second := rename(board, "/Target", 5, "ex3") // same version, later origin: newer
	// A folder of the organization file onto whose path a concurrent
	// rename lands: the rename (newer than the file) holds the path.
	third := rename(archive, "/Target", 4, "ex2")
	orders := [][]change{{first, second, third}, {second, first, third}, {third, second, first}, {second, third, first}}
	var want map[string]string
	for _, order := range orders {
		d := contoso(t)
		for _, c := range order {
			if err := c.do(d); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		got := hierarchy(d)
		if want == nil {
			want = got
			s := d.Snapshot()
			tgt := s.Folder(directory.FolderKey(pf, "/Target"))
			if tgt == nil || tgt.ID != board {
				t.Fatalf("/Target is %+v, want the folder of the newer rename (%s)", tgt, board)
			}
			for _, id := range []string{eng, archive} {
				f := s.FolderByID(id)
				if f == nil || !strings.HasPrefix(f.Path, "/Target~") || len(s.Replicas(f.Key)) == 0 {
					t.Fatalf("%s lost the path: %+v, want it at /Target~<digest> with its replicas", id, f)
				}
			}
			if len(s.Replicas(tgt.Key)) == 0 || s.FolderByID(eng).Path == s.FolderByID(archive).Path {
				t.Fatalf("replicas or conflict paths wrong: %v", got)
			}
			continue
		}
		if !maps.Equal(got, want) {
			t.Fatalf("order %s, %s, %s: hierarchy\n%v\nwant (first order)\n%v", order[0].name, order[1].name, order[2].name, got, want)
		}
	}
	// The holder moves on: the newest of the waiting folders takes the
	// path (eng's rename, rev 5/ex1, is newer than archive's 4/ex2).
	for _, order := range [][]change{{first, second, third, rename(board, "/Elsewhere", 9, "ex3")},
		{rename(board, "/Elsewhere", 9, "ex3"), third, second, first}} {
		d := contoso(t)
		for _, c := range order {
			if err := c.do(d); err != nil {
				t.Fatal(err)
			}
		}
		s := d.Snapshot()
		if f := s.Folder(directory.FolderKey(pf, "/Target")); f == nil || f.ID != eng {
			t.Fatalf("after the holder moved on, /Target is %+v, want %s", f, eng)
		}
		if f := s.FolderByID(board); f == nil || f.Path != "/Elsewhere" {
			t.Fatalf("the holder is %+v, want /Elsewhere", f)
		}
		if err := d.DeleteFolders([]string{eng}); err != nil {
			t.Fatal(err)
		}
		if f := d.Snapshot().Folder(directory.FolderKey(pf, "/Target")); f == nil || f.ID != archive {
			t.Fatalf("after the holder was deleted, /Target is %+v, want %s", f, archive)
		}
	}
}

// Issue 12 item 3 (hierarchy replication of permissions, R17): a runtime
// permission change names the folder by identity and the principal case-
// insensitively; of two changes for one principal the newer wins in
// either order, a removal too; the change follows a rename, a deleted
// folder stays deleted, and snapshots taken before are left as they were.
func TestSetFolderPermission(t *testing.T) {
	board := directory.FolderKey(pf, "/Board")
	type change struct {
		principal, role string
		rev             directory.Rev
	}
	changes := []change{
		{"alice", "None", directory.Rev{Version: 5, Origin: "ex1"}},
		{"Alice", "Editor", directory.Rev{Version: 7, Origin: "ex1"}},
		{"Default", "", directory.Rev{Version: 6, Origin: "ex2"}},
		{"Anonymous", "", directory.Rev{Version: 8, Origin: "ex2"}},
		{"anonymous", "Contributor", directory.Rev{Version: 8, Origin: "ex3"}}, // same version: origin breaks the tie
	}
	for _, order := range []string{"oldest first", "newest first"} {
		d := contoso(t)
		before := d.Snapshot()
		steps := slices.Clone(changes)
		if order == "newest first" {
			slices.Reverse(steps)
		}
		for _, c := range steps {
			if err := d.SetFolderPermission(board, c.principal, c.role, c.rev); err != nil {
				t.Fatalf("%s: %v", order, err)
			}
		}
		f := d.Snapshot().Folder(board)
		want := map[string]string{"anonymous": "Contributor", "Alice": "Editor"}
		if !maps.Equal(f.Permissions, want) {
			t.Fatalf("%s: permissions %v, want %v", order, f.Permissions, want)
		}
		if got := permissions.RoleFor(f.Permissions, "alice", true); got != permissions.Editor {
			t.Fatalf("%s: alice's role %s, want Editor", order, got)
		}
		x := d.Snapshot().Index()
		fi, _, err := x.Resolve("board@contoso.example")
		if err != nil || fi < 0 || x.AnonymousRole(&x.Folders[fi]) != permissions.Contributor {
			t.Fatalf("%s: the routing index gives Anonymous %+v (%v), want Contributor", order, x.AnonymousRole(&x.Folders[fi]), err)
		}
		if old := before.Folder(board).Permissions; old["alice"] != "Owner" || old["Anonymous"] != "None" {
			t.Fatalf("%s: an older snapshot changed: %v", order, old)
		}
	}

	d := contoso(t)
	if err := d.SetFolderPermission(board, "bob", "Author", directory.Rev{Version: 3, Origin: "ex1"}); err != nil {
		t.Fatal(err)
	}
	if err := d.RenameFolders(map[string]string{board: "/Directors"}, directory.Rev{Version: 4, Origin: "ex1"}); err != nil {
		t.Fatal(err)
	}
	if f := d.Snapshot().Folder(directory.FolderKey(pf, "/Directors")); f == nil || f.Permissions["bob"] != "Author" {
		t.Fatalf("the permission did not follow the rename: %+v", f)
	}
	if err := d.SetFolderPermission(board, "bob", "Reviewer", directory.Rev{Version: 2, Origin: "ex9"}); err != nil {
		t.Fatal(err)
	}
	if f := d.Snapshot().Folder(directory.FolderKey(pf, "/Directors")); f.Permissions["bob"] != "Author" {
		t.Fatalf("an older change arriving after the rename won: %v", f.Permissions)
	}
	if err := d.DeleteFolders([]string{board}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFolderPermission(board, "bob", "Owner", directory.Rev{Version: 9, Origin: "ex1"}); err != nil {
		t.Fatal(err)
	}
	if d.Snapshot().FolderByID(board) != nil {
		t.Fatal("a permission change brought a deleted folder back")
	}
}

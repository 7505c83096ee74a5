package directory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// FolderByID returns the folder whose identity is id (see Folder.ID), or
// nil if there is none (never defined, or deleted).
func (s *Snapshot) FolderByID(id string) *Folder { return folderByID(s.txn, id) }

// folderByID finds a folder by identity. Almost every folder still has the
// key it was defined under (ID == Key), so the "ID" index holds only the
// folders a rename moved (movedIDIndex): a unique index over every folder's
// identity cost ~90 MiB of radix nodes on a 200,000-folder directory. The
// key index is asked first; a folder found there under another identity
// (one renamed onto this key) sends the lookup to the moved index.
func folderByID(txn *memdb.Txn, id string) *Folder {
	if raw, _ := txn.First("folders", "id", id); raw != nil {
		if f := raw.(*Folder); f.ID == id {
			return f
		}
	}
	if raw, _ := txn.First("folders", "ID", id); raw != nil {
		return raw.(*Folder)
	}
	return nil
}

// movedIDIndex indexes a folder's identity only when it differs from its
// key (see folderByID).
type movedIDIndex struct{}

func (movedIDIndex) FromObject(obj any) (bool, []byte, error) {
	f, ok := obj.(*Folder)
	if !ok {
		return false, nil, fmt.Errorf("moved-id index: %T is not a folder", obj)
	}
	if f.ID == "" || f.ID == f.Key {
		return false, nil, nil
	}
	return true, append([]byte(f.ID), 0), nil
}

func (movedIDIndex) FromArgs(args ...any) ([]byte, error) {
	return (&memdb.StringFieldIndex{Field: "ID"}).FromArgs(args...)
}

// MovedFolders lists the folder keys that no longer name a folder because
// of a runtime rename or delete, with what became of each.
func (s *Snapshot) MovedFolders() []*Moved { return all[Moved](s, "moved", "id") }

// Subtree lists a folder and the folders below it in its hierarchy
// (paths under path + "/"), parents first.
func (s *Snapshot) Subtree(hierarchy, path string) []*Folder {
	var out []*Folder
	for _, f := range s.FoldersOf(hierarchy) {
		if f.Path == path || strings.HasPrefix(f.Path, path+"/") {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b *Folder) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// RenameFolders gives folders, named by identity, new paths in their
// hierarchy, as one runtime change rev: their addresses, permissions and
// replicas go with them. A folder whose path a newer change set is left
// alone (renames applied in any order end the same), and a deleted one is
// not brought back. Two folders renamed onto one path by concurrent
// changes (two servers, each before hearing of the other's) both want it:
// the newer change holds it and the other folder gets a conflict path
// (placeFolders), the same on every server whatever order the changes
// arrive in; no folder and no message is lost.
func (d *Directory) RenameFolders(paths map[string]string, rev Rev) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	ids := make([]string, 0, len(paths))
	for id := range paths {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var moves []relocation
	hierarchies := map[string]bool{}
	for _, id := range ids {
		f := folderByID(txn, id)
		if f == nil {
			continue // deleted (delete wins), or unknown here
		}
		if !f.Rev.Before(rev) || !strings.HasPrefix(paths[id], "/") {
			continue
		}
		nf := *f
		nf.Rev, nf.Wanted = rev, FolderKey(f.Hierarchy, paths[id])
		moves = append(moves, relocation{old: f, nf: &nf})
		hierarchies[f.Hierarchy] = true
	}
	// The wanted keys are recorded first (in place), then every folder of
	// the hierarchies concerned is put where the rule says.
	for _, m := range moves {
		if err := txn.Insert("folders", m.nf); err != nil {
			return err
		}
	}
	for h := range hierarchies {
		if err := placeFolders(txn, h); err != nil {
			return err
		}
	}
	txn.Commit()
	l.publish()
	return nil
}

// relocation is a folder's record before and after a change.
type relocation struct {
	old *Folder
	nf  *Folder
}

// placeFolders puts every folder of hierarchy h at the key the placement
// rule gives it (placement), moving its addresses and replicas and
// recording the old key as moved.
func placeFolders(txn *memdb.Txn, h string) error {
	it, err := txn.Get("folders", "id")
	if err != nil {
		return err
	}
	var all []*Folder
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if f := raw.(*Folder); f.Hierarchy == h {
			all = append(all, f)
		}
	}
	keys := placement(all)
	var rs []relocation
	for _, f := range all {
		if k := keys[f.ID]; k != f.Key {
			nf := *f
			nf.Key, nf.Path = k, strings.TrimPrefix(k, h+":")
			rs = append(rs, relocation{old: f, nf: &nf})
		}
	}
	return relocate(txn, rs)
}

// placement is the rule that makes concurrent renames converge: each
// folder wants one key (its newest rename's, or its own); of the folders
// wanting one key, the one whose rename is newest (Rev, then identity)
// holds it, and each other one holds conflictKey of it. It depends only on
// the folders' wanted keys and revisions, never on the order the changes
// were applied in, so every server computes the same hierarchy.
func placement(folders []*Folder) map[string]string {
	byWant := map[string][]*Folder{}
	for _, f := range folders {
		w := f.Wanted
		if w == "" {
			w = f.Key
		}
		byWant[w] = append(byWant[w], f)
	}
	out := make(map[string]string, len(folders))
	for want, fs := range byWant {
		slices.SortFunc(fs, func(a, b *Folder) int {
			switch {
			case a.Rev.Before(b.Rev):
				return 1
			case b.Rev.Before(a.Rev):
				return -1
			}
			return strings.Compare(b.ID, a.ID)
		})
		out[fs[0].ID] = want
		for _, f := range fs[1:] {
			out[f.ID] = conflictKey(want, f.ID, byWant)
		}
	}
	return out
}

// conflictKey is where a folder that lost the key it wants sits: the key
// with "~" and a digest of the folder's identity appended (e.g.
// "/Revenue~3fa2c1d0"), longer if a folder wants that key itself.
func conflictKey(want, id string, wanted map[string][]*Folder) string {
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:])
	for n := 8; ; n += 8 {
		k := want + "~" + h[:n]
		if _, taken := wanted[k]; !taken || n >= len(h) {
			return k
		}
	}
}

// relocate re-keys folders: every old entry goes before any new one is
// written, so folders may trade places; addresses and replicas follow,
// and each old key is recorded as moved to the new one.
func relocate(txn *memdb.Txn, rs []relocation) error {
	type entries struct {
		addrs    []*address
		replicas []*Replica
	}
	old := make([]entries, len(rs))
	for i, m := range rs {
		it, err := txn.Get("addresses", "id")
		if err != nil {
			return err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if a := raw.(*address); a.Folder == m.old.Key {
				old[i].addrs = append(old[i].addrs, a)
			}
		}
		rit, err := txn.Get("replicas", "FolderKey", m.old.Key)
		if err != nil {
			return err
		}
		for raw := rit.Next(); raw != nil; raw = rit.Next() {
			old[i].replicas = append(old[i].replicas, raw.(*Replica))
		}
		if err := txn.Delete("folders", m.old); err != nil {
			return err
		}
		for _, a := range old[i].addrs {
			if err := txn.Delete("addresses", a); err != nil {
				return err
			}
		}
		for _, r := range old[i].replicas {
			if err := txn.Delete("replicas", r); err != nil {
				return err
			}
		}
	}
	for i, m := range rs {
		if err := txn.Insert("folders", m.nf); err != nil {
			return err
		}
		for _, a := range old[i].addrs {
			if err := txn.Insert("addresses", &address{Addr: a.Addr, Folder: m.nf.Key}); err != nil {
				return err
			}
		}
		for _, r := range old[i].replicas {
			if err := txn.Insert("replicas", &Replica{ID: m.nf.Key + "|" + r.Store, FolderKey: m.nf.Key, Store: r.Store}); err != nil {
				return err
			}
		}
	}
	for _, m := range rs {
		if err := setMoved(txn, m.old.Key, m.nf.Key); err != nil {
			return err
		}
	}
	return nil
}

// DeleteFolders removes folders, named by identity, with their addresses
// and replicas, for good: a rename or replica arriving later for one of
// them changes nothing (delete wins).
func (d *Directory) DeleteFolders(ids []string) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	hierarchies := map[string]bool{}
	for _, id := range ids {
		f := folderByID(txn, id)
		if f == nil {
			continue
		}
		var addrs []*address
		it, err := txn.Get("addresses", "id")
		if err != nil {
			return err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if a := raw.(*address); a.Folder == f.Key {
				addrs = append(addrs, a)
			}
		}
		for _, a := range addrs {
			if err := txn.Delete("addresses", a); err != nil {
				return err
			}
		}
		if _, err := txn.DeleteAll("replicas", "FolderKey", f.Key); err != nil {
			return err
		}
		if err := txn.Delete("folders", f); err != nil {
			return err
		}
		if err := setMoved(txn, f.Key, ""); err != nil {
			return err
		}
		hierarchies[f.Hierarchy] = true
	}
	for h := range hierarchies {
		if err := placeFolders(txn, h); err != nil { // a folder that lost a path the deleted one held takes it
			return err
		}
	}
	txn.Commit()
	l.publish()
	return nil
}

// setMoved records that key now leads to `to` ("" deleted): entries that
// led to key lead to `to` too (no chains to follow), and `to` names a
// folder again, so it is no longer moved itself.
func setMoved(txn *memdb.Txn, key, to string) error {
	it, err := txn.Get("moved", "id")
	if err != nil {
		return err
	}
	var chain []*Moved
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if m := raw.(*Moved); m.To == key {
			chain = append(chain, m)
		}
	}
	for _, m := range chain {
		if err := txn.Insert("moved", &Moved{Key: m.Key, To: to}); err != nil {
			return err
		}
	}
	if to != "" {
		if _, err := txn.DeleteAll("moved", "id", to); err != nil {
			return err
		}
	}
	return txn.Insert("moved", &Moved{Key: key, To: to})
}

// SetFolderPermission gives principal (a user, permissions.Anonymous or
// permissions.Default) role on the folder whose identity is id, as one
// runtime change rev; role "" removes the principal's entry. Each
// principal of a folder keeps the revision of the change that last set it
// there, so changes applied in any order end the same (newest wins), and
// a removal is remembered as such. A folder unknown here (deleted, or not
// yet known) is left alone: delete wins.
func (d *Directory) SetFolderPermission(id, principal, role string, rev Rev) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	old := folderByID(txn, id)
	if old == nil {
		return nil
	}
	who := strings.ToLower(principal)
	if prev, ok := old.PermissionRevs[who]; ok && !prev.Before(rev) {
		return nil // a newer change (or this one) is in force
	}
	// Stored folders are shared with older snapshots: copy, never edit.
	nf := *old
	nf.Permissions = make(map[string]string, len(old.Permissions)+1)
	for k, v := range old.Permissions {
		if !strings.EqualFold(k, principal) {
			nf.Permissions[k] = v
		}
	}
	if role != "" {
		nf.Permissions[principal] = role
	}
	nf.PermissionRevs = make(map[string]Rev, len(old.PermissionRevs)+1)
	maps.Copy(nf.PermissionRevs, old.PermissionRevs)
	nf.PermissionRevs[who] = rev
	if err := txn.Insert("folders", &nf); err != nil {
		return err
	}
	txn.Commit()
	l.publish()
	return nil
}

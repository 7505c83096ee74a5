package directory

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// FolderByID returns the folder whose identity is id (see Folder.ID), or
// nil if there is none (never defined, or deleted).
func (s *Snapshot) FolderByID(id string) *Folder { return first[Folder](s, "folders", "ID", id) }

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
// alone (renames applied in any order end the same), a deleted one is not
// brought back, and a folder whose new key another folder holds keeps its
// path (the error names it).
func (d *Directory) RenameFolders(paths map[string]string, rev Rev) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	l := d.live()
	txn := l.db.Txn(true)
	defer txn.Abort()
	type move struct {
		old *Folder
		key string
	}
	var moves []move
	moving := map[string]bool{}
	ids := make([]string, 0, len(paths))
	for id := range paths {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		raw, _ := txn.First("folders", "ID", id)
		if raw == nil {
			continue // deleted (delete wins), or unknown here
		}
		f := raw.(*Folder)
		if !f.Rev.Before(rev) || !strings.HasPrefix(paths[id], "/") {
			continue
		}
		moves = append(moves, move{f, FolderKey(f.Hierarchy, paths[id])})
		moving[f.Key] = true
	}
	var refused []string
	kept := moves[:0]
	for _, m := range moves {
		if raw, _ := txn.First("folders", "id", m.key); raw != nil && !moving[m.key] {
			refused = append(refused, m.old.Path+" -> "+m.key)
			continue
		}
		kept = append(kept, m)
	}
	moves = kept
	// Every old entry goes before any new one is written, so folders of
	// one change may trade places.
	type entries struct {
		addrs    []*address
		replicas []*Replica
	}
	old := make([]entries, len(moves))
	for i, m := range moves {
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
	for i, m := range moves {
		nf := *m.old
		nf.Key, nf.Path, nf.Rev = m.key, strings.TrimPrefix(m.key, m.old.Hierarchy+":"), rev
		if err := txn.Insert("folders", &nf); err != nil {
			return err
		}
		for _, a := range old[i].addrs {
			if err := txn.Insert("addresses", &address{Addr: a.Addr, Folder: m.key}); err != nil {
				return err
			}
		}
		for _, r := range old[i].replicas {
			if err := txn.Insert("replicas", &Replica{ID: m.key + "|" + r.Store, FolderKey: m.key, Store: r.Store}); err != nil {
				return err
			}
		}
		if err := setMoved(txn, m.old.Key, m.key); err != nil {
			return err
		}
	}
	txn.Commit()
	l.publish()
	if len(refused) > 0 {
		return fmt.Errorf("folders not renamed, their new path is taken: %s", strings.Join(refused, ", "))
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
	for _, id := range ids {
		raw, _ := txn.First("folders", "ID", id)
		if raw == nil {
			continue
		}
		f := raw.(*Folder)
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
	raw, _ := txn.First("folders", "ID", id)
	if raw == nil {
		return nil
	}
	old := raw.(*Folder)
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

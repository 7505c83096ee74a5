package replication

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/store"
)

// paired reports whether p still holds in snap: the folder exists under
// the same key and both stores hold a replica of it.
func paired(snap *directory.Snapshot, p Pair) bool {
	if snap.Folder(p.FolderKey) == nil {
		return false
	}
	local, source := false, false
	for _, r := range snap.Replicas(p.FolderKey) {
		local = local || r.Store == p.Local
		source = source || r.Store == p.Source
	}
	return local && source
}

// reconcileFolders brings the replicas in this server's public stores in
// line with folders renamed or deleted at run time (spread by gossip): a
// replica is renamed to its folder's path, content, change log and CN set
// included (they belong to the mailbox, not its name); one under a deleted
// key is deleted with its content. Every replica of the folder does the
// same on its own server, so the folder changes everywhere; a server that
// learns of the change late (partitioned) applies it when it does, and
// nobody pulls the folder from it meanwhile (the other servers no longer
// list the folder, or a pull names the folder's identity and the source
// answers only from the replica of that identity).
//
// A replica is found by the identity of its folder (store.TagMailbox),
// not by its name: concurrent renames onto one path (directory
// placeFolders) give a path to another folder, and a swap trades two.
// A replica is tagged with the folder its name gives in the directory the
// first time it is seen; renames then follow the identity, through a
// temporary name when two replicas trade names.
//
// It reports false when something failed and is to be tried again.
func (s *Service) reconcileFolders(snap *directory.Snapshot) bool {
	ctx := s.ctx
	settled := true
	for _, st := range snap.StoresOn(s.o.Server) {
		if st.Kind != config.StorePublic {
			continue
		}
		if !s.reconcileStore(ctx, snap, st.Name, st.Hierarchy) {
			settled = false
		}
	}
	return settled
}

func (s *Service) reconcileStore(ctx context.Context, snap *directory.Snapshot, st, hierarchy string) (settled bool) {
	settled = true
	moved := map[string]string{}
	for _, m := range snap.MovedFolders() {
		moved[m.Key] = m.To
	}
	boxes, err := s.o.Store.ListMailboxes(ctx, st, "")
	if err != nil {
		s.log.Warn("list public folder replicas", "store", st, "err", err)
		return false
	}
	names := map[string]bool{}
	rename := map[string]string{} // replica name -> its folder's path
	for _, b := range boxes {
		names[b.Name] = true
		ref := store.MailboxRef{Store: st, Name: b.Name}
		key := directory.FolderKey(hierarchy, b.Name)
		id := b.Folder
		if id == "" {
			f := snap.Folder(key)
			if f == nil {
				if dst, ok := moved[key]; ok && dst != "" {
					// Moved before it was ever tagged: the folder that
					// left this key is the one it holds.
					if g := snap.Folder(dst); g != nil {
						if err := s.o.Store.TagMailbox(ctx, ref, g.ID); err != nil {
							settled = false
							continue
						}
					}
					rename[b.Name] = strings.TrimPrefix(dst, hierarchy+":")
				} else if ok {
					if !s.deleteReplica(ctx, ref) {
						settled = false
					}
					delete(names, b.Name)
				}
				continue
			}
			if err := s.o.Store.TagMailbox(ctx, ref, f.ID); err != nil {
				s.log.Warn("tag a public folder replica with its folder", "store", st, "folder", b.Name, "err", err)
				settled = false
				continue
			}
			id = f.ID
		}
		f := snap.FolderByID(id)
		if f == nil {
			if dst, ok := moved[key]; ok && dst == "" {
				if !s.deleteReplica(ctx, ref) {
					settled = false
				}
				delete(names, b.Name)
			}
			continue
		}
		if f.Hierarchy == hierarchy && f.Path != b.Name {
			rename[b.Name] = f.Path
		}
	}
	// Renames whose new name is free go first; when only a cycle is left
	// (two replicas trade names), one steps aside to a temporary name.
	for len(rename) > 0 {
		from := slices.Sorted(maps.Keys(rename))
		progress := false
		for _, name := range from {
			to := rename[name]
			if names[to] {
				if _, moving := rename[to]; !moving {
					s.log.Warn("a replica's folder path is held by another replica; left as it is", "store", st, "folder", name, "to", to)
					delete(rename, name)
				}
				continue
			}
			if !s.renameReplica(ctx, store.MailboxRef{Store: st, Name: name}, to) {
				return false
			}
			delete(names, name)
			names[to] = true
			delete(rename, name)
			progress = true
		}
		if !progress && len(rename) > 0 {
			name := slices.Sorted(maps.Keys(rename))[0]
			tmp := name + "~moving"
			for names[tmp] {
				tmp += "~"
			}
			if !s.renameReplica(ctx, store.MailboxRef{Store: st, Name: name}, tmp) {
				return false
			}
			delete(names, name)
			names[tmp] = true
			rename[tmp] = rename[name]
			delete(rename, name)
		}
	}
	return settled
}

func (s *Service) renameReplica(ctx context.Context, ref store.MailboxRef, to string) bool {
	// The replica alone: the folders below it are replicas of their own,
	// placed by their own identity.
	if err := s.o.Store.RenameMailbox(ctx, ref, to, 0); err != nil {
		s.log.Warn("rename the replica of a renamed folder", "store", ref.Store, "folder", ref.Name, "to", to, "err", err)
		return false
	}
	s.log.Info("replica of a renamed folder renamed", "store", ref.Store, "folder", ref.Name, "to", to)
	return true
}

func (s *Service) deleteReplica(ctx context.Context, ref store.MailboxRef) bool {
	if err := s.o.Store.DeleteMailbox(ctx, ref); err != nil && !errors.Is(err, store.ErrNoMailbox) {
		s.log.Warn("delete the replica of a deleted folder", "store", ref.Store, "folder", ref.Name, "err", err)
		return false
	}
	s.log.Info("replica of a deleted folder deleted", "store", ref.Store, "folder", ref.Name)
	return true
}

// replicaIs reports whether the replica ref (folder key) holds the folder
// whose identity is id: by its tag, or, not tagged yet, by the directory.
// A replica that does not exist yet is anybody's (an empty answer, or
// created by the apply for this folder).
func (s *Service) replicaIs(ctx context.Context, snap *directory.Snapshot, ref store.MailboxRef, key, id string) bool {
	if id == "" {
		return true
	}
	tag, err := s.o.Store.MailboxFolder(ctx, ref)
	if errors.Is(err, store.ErrNoMailbox) {
		return true
	}
	if err != nil {
		return false
	}
	if tag != "" {
		return tag == id
	}
	f := snap.Folder(key)
	return f != nil && f.ID == id
}

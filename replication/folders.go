package replication

import (
	"errors"
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
// line with folders renamed or deleted at run time (the directory's moved
// keys, spread by gossip): a replica under a key that was renamed is
// renamed, content, change log and CN set included (they belong to the
// mailbox, not its name); one under a deleted key is deleted with its
// content. Every replica of the folder does the same on its own server,
// so the folder changes everywhere; a server that learns of the change
// late (partitioned) applies it when it does, and nobody pulls the folder
// from it meanwhile (the other servers no longer list the folder).
func (s *Service) reconcileFolders(snap *directory.Snapshot) {
	moved := snap.MovedFolders()
	if len(moved) == 0 {
		return
	}
	var sig strings.Builder
	to := make(map[string]string, len(moved))
	for _, m := range moved {
		to[m.Key] = m.To
		sig.WriteString(m.Key + ">" + m.To + "|")
	}
	if sig.String() == s.movedSig {
		return
	}
	ctx := s.ctx
	done := true
	for _, st := range snap.StoresOn(s.o.Server) {
		if st.Kind != config.StorePublic {
			continue
		}
		boxes, err := s.o.Store.ListMailboxes(ctx, st.Name, "")
		if err != nil {
			s.log.Warn("list public folder replicas", "store", st.Name, "err", err)
			done = false
			continue
		}
		names := make([]string, 0, len(boxes))
		for _, b := range boxes {
			names = append(names, b.Name)
		}
		slices.Sort(names) // parents first: their rename moves the folders below
		for _, name := range names {
			key := directory.FolderKey(st.Hierarchy, name)
			dst, ok := to[key]
			if !ok || snap.Folder(key) != nil {
				continue
			}
			ref := store.MailboxRef{Store: st.Name, Name: name}
			if dst == "" {
				if err := s.o.Store.DeleteMailbox(ctx, ref); err != nil && !errors.Is(err, store.ErrNoMailbox) {
					s.log.Warn("delete the replica of a deleted folder", "store", st.Name, "folder", name, "err", err)
					done = false
					continue
				}
				s.log.Info("replica of a deleted folder deleted", "store", st.Name, "folder", name)
				continue
			}
			path := strings.TrimPrefix(dst, st.Hierarchy+":")
			err := s.o.Store.RenameMailbox(ctx, ref, path, '/')
			switch {
			case errors.Is(err, store.ErrNoMailbox):
				// moved with the folder above it
			case err != nil:
				s.log.Warn("rename the replica of a renamed folder", "store", st.Name, "folder", name, "to", path, "err", err)
				done = false
			default:
				s.log.Info("replica of a renamed folder renamed", "store", st.Name, "folder", name, "to", path)
			}
		}
	}
	if done {
		s.movedSig = sig.String()
	}
}

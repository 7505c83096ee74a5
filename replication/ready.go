package replication

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
)

// HierarchyDigest fingerprints what step 1 and step 2 need to know of a
// hierarchy: its stores, its folders with their mail attributes and
// permissions, and their replica lists. Two servers with equal digests
// route the hierarchy's mail the same way. Readiness flags are left out:
// they are what the digest is compared to decide.
func HierarchyDigest(snap *directory.Snapshot, hierarchy string) string {
	var lines []string
	if h := snap.Hierarchy(hierarchy); h != nil {
		for _, st := range h.Stores {
			lines = append(lines, "store\x00"+st.Name+"\x00"+st.Server+"\x00"+st.Created.UTC().Format(time.RFC3339))
		}
	}
	for _, f := range snap.FoldersOf(hierarchy) {
		perms := make([]string, 0, len(f.Permissions))
		for who, role := range f.Permissions {
			perms = append(perms, who+"="+role)
		}
		slices.Sort(perms)
		lines = append(lines, fmt.Sprintf("folder\x00%s\x00%v\x00%v\x00%s\x00%s\x00%d\x00%s\x00%s\x00%s", f.Key, f.MailEnabled, f.Hidden,
			f.Alias, strings.Join(f.Addresses, ","), f.MaxMessageSize, strings.Join(f.AcceptFrom, ","), strings.Join(f.RejectFrom, ","),
			strings.Join(perms, ",")))
		for _, r := range snap.Replicas(f.Key) {
			lines = append(lines, "replica\x00"+f.Key+"\x00"+r.Store)
		}
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

// readyLoop confirms, for each public store of this server whose hierarchy
// is pending, that this server holds the same hierarchy as a ready peer
// (equal digests), and then reports it ready (the node publishes a
// store_ready record). A store alone in its hierarchy is ready at once.
func (s *Service) readyLoop() {
	defer s.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		s.checkReady()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) checkReady() {
	if s.o.OnHierarchyReady == nil {
		return
	}
	snap := s.o.Directory.Snapshot()
	for _, st := range snap.StoresOn(s.o.Server) {
		if st.Kind != config.StorePublic || !st.HierarchyPending {
			continue
		}
		mine := HierarchyDigest(snap, st.Hierarchy)
		var peers []string
		if h := snap.Hierarchy(st.Hierarchy); h != nil {
			for _, o := range h.Stores {
				if o.Name != st.Name && !o.HierarchyPending && o.Server != s.o.Server && !slices.Contains(peers, o.Server) {
					peers = append(peers, o.Server)
				}
			}
			if len(peers) == 0 && !slices.ContainsFunc(h.Stores, func(o *directory.Store) bool { return o.Name != st.Name && !o.HierarchyPending }) {
				// No ready store anywhere: nothing to catch up with.
				s.ready(st.Name, "alone in its hierarchy")
				continue
			}
			for _, o := range h.Stores {
				if o.Name != st.Name && !o.HierarchyPending && o.Server == s.o.Server {
					s.ready(st.Name, "another store of this server holds the hierarchy")
					peers = nil
					break
				}
			}
		}
		for _, peer := range peers {
			if !s.reachable(peer) {
				continue
			}
			theirs, err := s.peerDigest(peer, st.Hierarchy)
			if err != nil {
				s.log.Debug("hierarchy digest of a peer unavailable", "peer", peer, "err", err)
				continue
			}
			if theirs == mine {
				s.ready(st.Name, "hierarchy equal to "+peer+"'s")
				break
			}
		}
	}
}

func (s *Service) ready(store, why string) {
	if err := s.o.OnHierarchyReady(store); err != nil {
		s.log.Warn("could not publish that a store's hierarchy is replicated", "store", store, "err", err)
		return
	}
	s.log.Info("store hierarchy replicated; step 1 may choose it", "store", store, "because", why)
}

// peerDigest asks peer for its digest of hierarchy, on a connection of its own.
func (s *Service) peerDigest(peer, hierarchy string) (string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	cc, err := s.dial(ctx, peer)
	if err != nil {
		return "", err
	}
	defer s.untrack(cc.c)
	resp, err := cc.exchange(ctx, &pullRequest{Digest: hierarchy}, s.o.MaxBody, 0)
	if err != nil {
		return "", err
	}
	return resp.Digest, nil
}

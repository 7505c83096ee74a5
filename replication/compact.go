package replication

import (
	"context"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/store"
)

// ackKey names what one replica (Peer) has acknowledged of a folder held
// by a local replica (Local).
type ackKey struct{ Local, FolderKey, Peer string }

// isReplicaOn reports whether store holds a replica of folder key and is
// on server.
func isReplicaOn(snap *directory.Snapshot, key, st, server string) bool {
	if o := snap.Store(st); o == nil || o.Server != server {
		return false
	}
	for _, r := range snap.Replicas(key) {
		if r.Store == st {
			return true
		}
	}
	return false
}

// noteAck keeps the CN set a replica sent with its pull: every change in
// it is held there (CN sets only grow; a replica restored from an older
// copy sends a smaller one, which compaction then waits for and a resync
// repairs).
func (s *Service) noteAck(local, key, peer string, have store.CNSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks[ackKey{local, key, peer}] = have
	s.heard[ackKey{local, key, peer}] = time.Now()
}

// compactEvery is the compaction interval in force; negative: never.
func (s *Service) compactEvery() time.Duration {
	every := s.o.CompactEvery
	if s.o.CompactInterval != nil {
		every = s.o.CompactInterval()
	}
	if every == 0 {
		every = DefaultCompactEvery
	}
	return every
}

// compactLoop compacts the change logs of this server's replicas every
// compactEvery. The interval is asked again every second, so a reload
// that shortens it (or turns compaction back on) applies within a second,
// not after the old interval.
func (s *Service) compactLoop() {
	defer s.wg.Done()
	last := time.Now()
	for {
		every := s.compactEvery()
		if wait := time.Until(last.Add(every)); every < 0 || wait > 0 {
			if every < 0 {
				wait = time.Second
			}
			if !sleep(s.ctx, min(wait, time.Second)) {
				return
			}
			continue
		}
		s.CompactNow(s.ctx)
		last = time.Now()
	}
}

// CompactNow compacts, for every replica on this server, what every other
// replica of its folder has acknowledged. A folder with a replica that has
// not pulled from this one since this server started is left alone (its
// acknowledgement is unknown): a replica that is never heard from holds
// compaction of its folders back.
func (s *Service) CompactNow(ctx context.Context) {
	snap := s.o.Directory.Snapshot()
	for _, local := range snap.StoresOn(s.o.Server) {
		if local.Kind != config.StorePublic {
			continue
		}
		for _, rep := range snap.ReplicasIn(local.Name) {
			f := snap.Folder(rep.FolderKey)
			if f == nil {
				continue
			}
			ref := store.MailboxRef{Store: local.Name, Name: f.Path}
			acked, ok := s.acked(snap, local.Name, f.Key)
			if !ok {
				continue
			}
			if acked == nil { // the only replica
				var err error
				if acked, err = s.o.Store.CNSetOf(ctx, ref); err != nil {
					continue
				}
			}
			res, err := s.o.Store.Compact(ctx, ref, acked)
			if err != nil {
				s.log.Warn("change log compaction failed", "store", local.Name, "folder", f.Key, "err", err)
				continue
			}
			if res.Changes > 0 {
				s.log.Info("change log compacted", "store", local.Name, "folder", f.Key, "changes", res.Changes, "tombstones", res.Tombstones)
			}
		}
	}
}

// acked intersects what every other replica of folder key acknowledged
// to local; ok is false while one of them is unknown. With no other
// replica, nil: everything local holds is acknowledged (a replica added
// later resyncs). A replica silent longer than the silence limit (not
// heard since this service started, or its last acknowledgement older)
// is left out: it no longer holds compaction back, and when it pulls
// again its CN set does not cover the horizon, so it resyncs (deleting
// what was deleted meanwhile) before it gets changes.
func (s *Service) acked(snap *directory.Snapshot, local, key string) (store.CNSet, bool) {
	limit := time.Duration(0)
	if s.o.SilenceLimit != nil {
		limit = s.o.SilenceLimit()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out store.CNSet
	for _, r := range snap.Replicas(key) {
		if r.Store == local {
			continue
		}
		k := ackKey{local, key, r.Store}
		last, heard := s.heard[k]
		if !heard {
			last = s.started
		}
		if limit > 0 && time.Since(last) > limit {
			continue
		}
		have, ok := s.acks[k]
		if !ok {
			return nil, false
		}
		if out == nil {
			out = have.Clone()
		} else {
			out = out.Intersect(have)
		}
	}
	return out, true
}

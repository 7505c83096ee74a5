package replication

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"pfrouter/directory"
	"pfrouter/store"
)

// ReplicaStatus is one replica of a folder as `pfrouter admin replica
// status` shows it, read live from the stores when asked (never a cached
// report).
type ReplicaStatus struct {
	Store    string `json:"store"`
	Server   string `json:"server"`
	Messages int    `json:"messages"`
	// CNSet summarises what the replica holds: per origin store, CN ranges (hex).
	CNSet string `json:"cn_set"`
	// InSync: the replica holds every change any reachable replica holds.
	InSync bool `json:"in_sync"`
	// Behind counts the changes it lacks: the most any single other
	// replica holds that it does not (a lower bound when two replicas
	// each hold different missing changes).
	Behind int `json:"behind"`
	// Error says why the replica could not be read (server unreachable...).
	Error string `json:"error,omitempty"`
}

// FolderStatus is a folder's replicas.
type FolderStatus struct {
	Hierarchy string          `json:"hierarchy"`
	Folder    string          `json:"folder"`
	InSync    bool            `json:"in_sync"`
	Replicas  []ReplicaStatus `json:"replicas"`
}

// statusQuery asks a server about its replicas of a folder; with Sets,
// also how many of its changes each of those replicas lacks.
type statusQuery struct {
	Hierarchy string                 `json:"hierarchy"`
	Path      string                 `json:"path"`
	Sets      map[string]store.CNSet `json:"sets,omitempty"`
}

type replicaReport struct {
	Store    string         `json:"store"`
	Messages int            `json:"messages"`
	Set      store.CNSet    `json:"set"`
	Missing  map[string]int `json:"missing,omitempty"` // other replica -> changes of this one it lacks
	Error    string         `json:"error,omitempty"`
}

// localStatus answers a statusQuery for this server's replicas.
func (s *Service) localStatus(ctx context.Context, q *statusQuery) []replicaReport {
	snap := s.o.Directory.Snapshot()
	key := directory.FolderKey(q.Hierarchy, q.Path)
	var out []replicaReport
	for _, r := range snap.Replicas(key) {
		st := snap.Store(r.Store)
		if st == nil || st.Server != s.o.Server {
			continue
		}
		ref := store.MailboxRef{Store: r.Store, Name: q.Path}
		rep := replicaReport{Store: r.Store}
		set, err := s.o.Store.CNSetOf(ctx, ref)
		if err != nil {
			rep.Error = err.Error()
			out = append(out, rep)
			continue
		}
		rep.Set = set
		if msgs, err := s.o.Store.Messages(ctx, ref); err == nil {
			rep.Messages = len(msgs)
		}
		for other, have := range q.Sets {
			if other == r.Store {
				continue
			}
			n, err := s.o.Store.Missing(ctx, ref, have)
			if err != nil {
				rep.Error = err.Error()
				break
			}
			if rep.Missing == nil {
				rep.Missing = map[string]int{}
			}
			rep.Missing[other] = n
		}
		out = append(out, rep)
	}
	return out
}

// query asks server (this one included) a statusQuery.
func (s *Service) query(ctx context.Context, server string, q *statusQuery) ([]replicaReport, error) {
	if server == s.o.Server {
		return s.localStatus(ctx, q), nil
	}
	cc, err := s.dial(ctx, server)
	if err != nil {
		return nil, err
	}
	defer s.untrack(cc.c)
	resp, err := cc.exchange(ctx, &pullRequest{Status: q}, s.o.MaxBody, 0)
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// FolderStatus reads every replica of a folder, from every server holding
// one: first their CN sets, then how much each lacks of the others'.
func (s *Service) FolderStatus(ctx context.Context, hierarchy, path string) (FolderStatus, error) {
	snap := s.o.Directory.Snapshot()
	key := directory.FolderKey(hierarchy, path)
	if snap.Folder(key) == nil {
		return FolderStatus{}, fmt.Errorf("folder %s is not in hierarchy %s", path, hierarchy)
	}
	serverOf := map[string]string{}
	var servers []string
	for _, r := range snap.Replicas(key) {
		if st := snap.Store(r.Store); st != nil {
			serverOf[r.Store] = st.Server
			if !slices.Contains(servers, st.Server) {
				servers = append(servers, st.Server)
			}
		}
	}
	ask := func(q *statusQuery) (map[string]replicaReport, map[string]error) {
		reports, errs := map[string]replicaReport{}, map[string]error{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, server := range servers {
			wg.Go(func() {
				rs, err := s.query(ctx, server, q)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs[server] = err
					return
				}
				for _, r := range rs {
					reports[r.Store] = r
				}
			})
		}
		wg.Wait()
		return reports, errs
	}
	first, _ := ask(&statusQuery{Hierarchy: hierarchy, Path: path})
	sets := map[string]store.CNSet{}
	for name, r := range first {
		if r.Error == "" {
			sets[name] = r.Set
		}
	}
	second, errs := ask(&statusQuery{Hierarchy: hierarchy, Path: path, Sets: sets})
	out := FolderStatus{Hierarchy: hierarchy, Folder: path, InSync: true}
	for _, r := range snap.Replicas(key) {
		rs := ReplicaStatus{Store: r.Store, Server: serverOf[r.Store]}
		rep, ok := second[r.Store]
		switch {
		case errs[rs.Server] != nil:
			rs.Error = errs[rs.Server].Error()
		case !ok:
			rs.Error = "its server did not report it"
		case rep.Error != "":
			rs.Error = rep.Error
		default:
			rs.Messages, rs.CNSet = rep.Messages, rep.Set.Summary()
			for other, orep := range second {
				if other != r.Store {
					rs.Behind = max(rs.Behind, orep.Missing[r.Store])
				}
			}
			rs.InSync = rs.Behind == 0
		}
		out.InSync = out.InSync && rs.InSync
		out.Replicas = append(out.Replicas, rs)
	}
	return out, nil
}

// Unsynced lists the folders with more than one replica that are not in
// sync (a replica behind, or unreadable), for the server-wide status.
func (s *Service) Unsynced(ctx context.Context) ([]FolderStatus, error) {
	snap := s.o.Directory.Snapshot()
	var out []FolderStatus
	for _, f := range snap.Folders() {
		if len(snap.Replicas(f.Key)) < 2 {
			continue
		}
		st, err := s.FolderStatus(ctx, f.Hierarchy, f.Path)
		if err != nil {
			return nil, err
		}
		if !st.InSync {
			out = append(out, st)
		}
	}
	return out, nil
}

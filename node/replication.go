package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/replication"
	"pfrouter/servercred"
	"pfrouter/telemetry"
	"pfrouter/tracking"

	"go.opentelemetry.io/otel/trace"
)

// startReplication serves peers' pulls on listen.replication and runs this
// server's pull loops (docs/replication.md). Without the listener the
// server neither serves nor pulls: its replicas stay as routing fills them.
func (n *Node) startReplication(l net.Listener, id *servercred.Identity) {
	if l == nil {
		return
	}
	org := n.Org
	obs := &replicationObserver{server: n.Name, node: n}
	n.Replication = replication.New(replication.Options{
		Server: n.Name, Directory: n.Directory, Store: n.Store, Logger: n.Log,
		ServerTLS: id.ServerTLS(), ClientTLS: id.ClientTLS, PeerServer: servercred.PeerServer,
		Reachable:     func(server string) bool { return n.LinkState.Graph().Reachable(n.Name, server) },
		Interval:      time.Duration(org.Replication.Interval),
		MaxBatchBytes: int(replicationBatch(org)),
		// The organization in force (a reload changes it) with the
		// folder's own schedule over it.
		Schedule: func(f *directory.Folder) replication.Schedule {
			r := n.Directory.Org().FolderReplication(f.Replication)
			return replication.Schedule{Interval: time.Duration(r.Interval), MaxBatchBytes: int(r.MaxBatchBytes)}
		},
		MaxBody:         int64(org.Limits.MaxMessageSize),
		CompactInterval: func() time.Duration { return n.Directory.Org().CompactInterval() },
		SilenceLimit:    func() time.Duration { return n.Directory.Org().ReplicaSilenceLimit() },
		OnApplied:       obs.applied,
		OnError:         obs.failed,
		OnHierarchyReady: func(store string) error {
			return n.changes.SetStoreReady(store, n.Name)
		},
	})
	svc := n.Replication
	n.Telemetry.Metrics().SetReplicationBacklogFunc(func() int64 { return int64(svc.Backfilling()) })
	n.serve("replication", func() error { return svc.Serve(l) })
	svc.Start()
	n.closers = append(n.closers, func(context.Context) error { return svc.Close() })
}

func replicationBatch(org *config.Org) config.ByteSize {
	if org.Replication.MaxBatchBytes > 0 {
		return org.Replication.MaxBatchBytes
	}
	return config.DefaultReplicationBatch
}

// replicationObserver records applied batches in the tracking log.
type replicationObserver struct {
	server string
	node   *Node
}

func (o *replicationObserver) applied(a replication.Applied) {
	r := a.Result
	lags := make([]float64, len(a.Lag))
	for i, l := range a.Lag {
		lags[i] = l.Seconds()
	}
	o.node.Telemetry.Metrics().ReplicationApplied(context.Background(), r.Added, r.Deleted, r.Flagged, r.Skipped, lags)
	if r.Added+r.Deleted+r.Flagged == 0 {
		return
	}
	if tel := o.node.Telemetry; tel.Tracing() {
		_, sp := tel.Tracer().Start(context.Background(), telemetry.SpanReplicate, trace.WithAttributes(
			telemetry.KeyServer.String(o.server), telemetry.KeyFolder.String(a.Pair.FolderKey), telemetry.KeyStore.String(a.Pair.Local),
			telemetry.KeySourceStore.String(a.Pair.Source), telemetry.KeyChangesAdded.Int(r.Added), telemetry.KeyChangesOthers.Int(r.Deleted+r.Flagged)))
		sp.End()
	}
	o.node.Tracking.Append(tracking.Event{Kind: "replicated", Recipient: a.Pair.FolderKey, Details: map[string]string{
		"store": a.Pair.Local, "source": a.Pair.Source, "source_server": a.Pair.SourceServer,
		"added": strconv.Itoa(r.Added), "deleted": strconv.Itoa(r.Deleted), "flags": strconv.Itoa(r.Flagged),
		"skipped": strconv.Itoa(r.Skipped), "more": strconv.FormatBool(a.More)}})
}

func (o *replicationObserver) failed(source string, err error) {
	o.node.Telemetry.Metrics().ReplicationFailed(context.Background())
	o.node.Tracking.Append(tracking.Event{Kind: "replication-failed", Details: map[string]string{"source_server": source, "error": err.Error()}})
}

// replicationStatus serves GET /v1/replication: ?folder=/Sales[&hierarchy=H]
// for one folder's replicas, or no folder for the folders not in sync.
func (n *Node) replicationStatus(w http.ResponseWriter, r *http.Request) {
	svc := n.Replication
	writeJSON := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
	fail := func(code int, msg string) { writeJSON(code, map[string]string{"error": msg}) }
	if svc == nil {
		fail(http.StatusConflict, "replication is off on "+n.Name+" (no listen.replication)")
		return
	}
	folder, hier := r.URL.Query().Get("folder"), r.URL.Query().Get("hierarchy")
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	if folder == "" {
		out, err := svc.Unsynced(ctx)
		if err != nil {
			fail(http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(http.StatusOK, map[string]any{"not_in_sync": out})
		return
	}
	if hier == "" {
		var hs []string
		for _, f := range n.Directory.Snapshot().Folders() {
			if f.Path == folder {
				hs = append(hs, f.Hierarchy)
			}
		}
		if len(hs) != 1 {
			fail(http.StatusBadRequest, fmt.Sprintf("folder %s is in %d hierarchies; name one with hierarchy", folder, len(hs)))
			return
		}
		hier = hs[0]
	}
	st, err := svc.FolderStatus(ctx, hier, folder)
	if err != nil {
		fail(http.StatusNotFound, err.Error())
		return
	}
	writeJSON(http.StatusOK, st)
}

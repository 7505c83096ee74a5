package node

import (
	"context"
	"net"
	"strconv"
	"time"

	"pfrouter/config"
	"pfrouter/replication"
	"pfrouter/servercred"
	"pfrouter/tracking"
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
		MaxBody:       int64(org.Limits.MaxMessageSize),
		OnApplied:     obs.applied,
		OnError:       obs.failed,
		OnHierarchyReady: func(store string) error {
			return n.changes.SetStoreReady(store, n.Name)
		},
	})
	svc := n.Replication
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
	if r.Added+r.Deleted+r.Flagged == 0 {
		return
	}
	o.node.Tracking.Append(tracking.Event{Kind: "replicated", Recipient: a.Pair.FolderKey, Details: map[string]string{
		"store": a.Pair.Local, "source": a.Pair.Source, "source_server": a.Pair.SourceServer,
		"added": strconv.Itoa(r.Added), "deleted": strconv.Itoa(r.Deleted), "flags": strconv.Itoa(r.Flagged),
		"skipped": strconv.Itoa(r.Skipped), "more": strconv.FormatBool(a.More)}})
}

func (o *replicationObserver) failed(source string, err error) {
	o.node.Tracking.Append(tracking.Event{Kind: "replication-failed", Details: map[string]string{"source_server": source, "error": err.Error()}})
}

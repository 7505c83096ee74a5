package node

import (
	"context"
	"time"
)

// startMaintenance expires the store's delivery dedup records every
// replication.compact_every (the pass that also compacts the replicas'
// change logs), keeping replication.dedup_retention of them: they make a
// retried delivery idempotent, and every retry happens within
// routing.message_expiry, which the retention outlives (docs/replication.md,
// "Delivery dedup records"). Every server runs it, replicating or not: a
// mailbox store's deliveries are deduplicated the same way.
func (n *Node) startMaintenance() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			t := time.NewTimer(n.Directory.Org().CompactInterval())
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			n.ExpireDeliveries(ctx)
		}
	}()
	// Stopped before the store closes (closers run in reverse), and waited
	// for: a pass in progress must not write to a closed store.
	n.closers = append(n.closers, func(context.Context) error { cancel(); <-done; return nil })
}

// ExpireDeliveries runs one expiry pass of the delivery dedup records now.
func (n *Node) ExpireDeliveries(ctx context.Context) {
	res, err := n.Store.ExpireDeliveries(ctx, time.Now().Add(-n.Directory.Org().DedupRetention()))
	switch {
	case err != nil:
		n.Log.Warn("delivery dedup records not expired", "err", err)
	case res.Removed+res.Stamped > 0:
		n.Log.Info("delivery dedup records expired", "removed", res.Removed, "stamped", res.Stamped)
	}
}

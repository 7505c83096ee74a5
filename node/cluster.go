package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"

	"pfrouter/config"
)

// Cluster is several servers of one organization in one process.
type Cluster struct {
	Nodes map[string]*Node
	Order []string
}

// StartAll binds and starts the named servers (all when names is empty).
func StartAll(ctx context.Context, org *config.Org, names []string, o Options) (*Cluster, error) {
	ls, err := Bind(org, names)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Nodes: map[string]*Node{}}
	for _, s := range org.Servers {
		l, ok := ls[s.Name]
		if !ok {
			continue
		}
		// Every goroutine a server starts (listeners, sessions, queue
		// manager, badger) inherits the label, so a CPU profile of a
		// process serving several servers splits by server
		// (go tool pprof -tagfocus server=ex1).
		var n *Node
		pprof.Do(ctx, pprof.Labels("server", s.Name), func(ctx context.Context) {
			n, err = Start(ctx, org, s.Name, l, o)
		})
		if err != nil {
			for _, other := range ls {
				for _, x := range other {
					x.Close()
				}
			}
			c.Close(context.Background())
			return nil, fmt.Errorf("start %s: %w", s.Name, err)
		}
		c.Nodes[s.Name] = n
		c.Order = append(c.Order, s.Name)
	}
	return c, nil
}

// Close stops every server.
func (c *Cluster) Close(ctx context.Context) error {
	// Idle relay sessions between the servers would hold each other's SMTP
	// shutdown open: drop them first.
	for _, n := range c.Nodes {
		n.relay.Close()
	}
	var errs []error
	for i := len(c.Order) - 1; i >= 0; i-- {
		if err := c.Nodes[c.Order[i]].Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Order[i], err))
		}
	}
	return errors.Join(errs...)
}

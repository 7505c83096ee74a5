package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"pfrouter/config"
	"pfrouter/gossip"
)

// This file joins a server to its organization's gossip cluster. What the
// records mean and how they change the server is package changes' job;
// without listen.gossip a server applies its changes locally only (and
// forgets them on restart).

// startGossip joins the organization's memberlist cluster on
// listen.gossip. Seeds are the other servers' listen.gossip; in one
// process Bind has already replaced port 0 by a reserved port, so every
// server knows where its peers are before any starts.
func (n *Node) startGossip(srv *config.Server) error {
	var seeds []string
	for _, s := range n.Org.Servers {
		if s.Name != n.Name && s.Listen.Gossip != "" {
			seeds = append(seeds, s.Name+"/"+s.Listen.Gossip) // the name lets TLS verify the seed
		}
	}
	g, err := gossip.Start(n.ops.ctx, gossip.Options{
		Name: n.Name, Bind: srv.Listen.Gossip, Seeds: seeds, Secret: n.Secret, Identity: n.Identity,
		Dir: filepath.Join(n.DataDir, "gossip"), Applier: n.changes,
		Logger: n.Log, OnMemberChange: n.changes.MemberChanged,
		// Broadcasts carry a change at once; anti-entropy every 5 s repairs
		// a lost one quickly even under load.
		PushPullInterval: 5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("server %s: %w", n.Name, err)
	}
	n.ops.gossip = g
	n.changes.SetGossip(g)
	return nil
}

// reserveGossipAddr replaces port 0 in a listen.gossip address by a port
// free for both TCP and UDP (memberlist needs both on one port). Bind calls
// it so that, in one process, every server's gossip address is known
// before the first server starts and seeds can be used at once. The port
// is released again for memberlist to bind, which happens only once the
// server's stores are open: seconds on a busy machine. It is picked below
// the usual ephemeral range (32768 and up), because a port the kernel
// picked for a port-0 listen is exactly what it hands out next to other
// processes' outbound connections and port-0 listens, which took it in
// that window (servers failed to start with "address already in use");
// the kernel's pick is the fallback.
func reserveGossipAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return addr, nil
	}
	var lastErr error
	for i := range 60 {
		p := "0"
		if i < 40 {
			p = strconv.Itoa(20000 + rand.IntN(32768-20000))
		}
		tl, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err != nil {
			lastErr = err
			continue
		}
		got := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(got)))
		tl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		ul.Close()
		return net.JoinHostPort(host, strconv.Itoa(got)), nil
	}
	return "", errors.Join(errors.New("no port free for both TCP and UDP"), lastErr)
}

package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"pfrouter/admin"
	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/linkstate"
)

// Reload re-reads the configuration file (SIGHUP, POST /v1/reload; O5). A
// config that does not load is refused with config.Load's errors (each
// names its field and line) and the old config keeps running. A good one
// builds a new directory and link-state table, re-applies the runtime
// changes (gossip records) on top, keeps servers that are down down, and
// swaps both in at once; routing and queue tunables, the report domain and
// the SMTP limits follow. Listener addresses, the secret, the admin token,
// TLS, telemetry, access policy and max_line_length are read at start only:
// a change is logged as needing a restart.
func (n *Node) Reload(ctx context.Context) error {
	n.ops.reloadMu.Lock()
	defer n.ops.reloadMu.Unlock()
	cur := n.CurrentOrg()
	var org *config.Org
	var err error
	switch {
	case cur.Path == examples.ContosoName:
		org, err = config.Parse(examples.Contoso, examples.ContosoName, cur.Dir)
	case cur.Path == "":
		return fmt.Errorf("%w: this server's configuration was not read from a file; nothing to reload", admin.ErrInvalid)
	default:
		org, err = config.Load(cur.Path)
	}
	if err != nil {
		n.Log.Error("config reload refused; the running config stays in force", "path", cur.Path, "err", err)
		return fmt.Errorf("config reload refused, the running config stays in force: %w", err)
	}
	srv := org.ServerByName(n.Name)
	if srv == nil {
		return fmt.Errorf("config reload refused: server %q is no longer in %s (removing a server needs it stopped)", n.Name, cur.Path)
	}
	n.warnRestartNeeded(cur, org)
	keepBoundAddresses(n.Name, cur, org)
	firstSeen, err := loadFirstSeen(n.DataDir)
	if err != nil {
		return fmt.Errorf("config reload: %w", err)
	}
	dir, err := directory.New(org, directory.Options{FirstSeen: firstSeen})
	if err != nil {
		return fmt.Errorf("config reload refused: directory: %w", err)
	}
	ls, err := linkstate.FromConfig(org)
	if err != nil {
		return fmt.Errorf("config reload refused: link state: %w", err)
	}

	n.changes.Reapply(dir, ls, org.Routing.EffectiveMinAge(), func(minAge time.Duration) {
		r := org.Routing
		n.ops.routing.Store(&r)
		n.minAge.Store(int64(minAge))
		n.Directory.Replace(dir)
		n.LinkState.Replace(ls)
		n.ops.org.Store(org)
	})
	if n.SMTP != nil {
		n.SMTP.SetLimits(smtpLimits(org))
	}

	n.Qmgr.LinkStateChanged()
	n.Log.Info("config reloaded", "path", org.Path, "servers", len(org.Servers), "connectors", len(org.Connectors),
		"folders", len(org.Folders), "linkstate_version", n.LinkState.Version())
	return nil
}

// warnRestartNeeded logs settings a reload does not apply. A new address
// with port 0 means "any port" and matches whatever was bound.
func (n *Node) warnRestartNeeded(old, nw *config.Org) {
	was, now := old.ServerByName(n.Name), nw.ServerByName(n.Name)
	for _, l := range []struct{ key, was, now string }{
		{"smtp", was.Listen.SMTP, now.Listen.SMTP}, {"imap", was.Listen.IMAP, now.Listen.IMAP}, {"imaps", was.Listen.IMAPS, now.Listen.IMAPS},
		{"pop3", was.Listen.POP3, now.Listen.POP3}, {"pop3s", was.Listen.POP3S, now.Listen.POP3S}, {"admin", was.Listen.Admin, now.Listen.Admin},
		{"gossip", was.Listen.Gossip, now.Listen.Gossip},
	} {
		if !sameListen(l.was, l.now) {
			n.Log.Warn("config reload: listener address changed; it takes effect at the next restart", "listen", l.key, "running", l.was, "configured", l.now)
		}
	}
	if old.Secret != nw.Secret || old.SecretFile != nw.SecretFile {
		n.Log.Warn("config reload: secret changed; it takes effect at the next restart")
	}
	if old.Admin != nw.Admin {
		n.Log.Warn("config reload: admin token settings changed; they take effect at the next restart")
	}
	// Applied by a reload: the routing section (message_class, expiry,
	// retry, failure detection, probe timings; qmgr reads the directory's
	// config), the domains (the report sender's domain) and the SMTP limits
	// below. What is read only at start is said here, loudly.
	if old.Limits.MaxLineLength != nw.Limits.MaxLineLength {
		n.Log.Warn("config reload: limits.max_line_length takes effect at the next restart", "running", old.Limits.MaxLineLength, "configured", nw.Limits.MaxLineLength)
	}
	if old.Telemetry != nw.Telemetry {
		n.Log.Warn("config reload: telemetry settings take effect at the next restart")
	}
	if old.Tracking != nw.Tracking {
		n.Log.Warn("config reload: tracking.retention takes effect at the next restart")
	}
	if old.Access != nw.Access {
		n.Log.Warn("config reload: access settings (cross_site, login_type) take effect at the next restart")
	}
	if old.TLS != nw.TLS || was.TLS != now.TLS {
		n.Log.Warn("config reload: TLS certificate settings take effect at the next restart")
	}
}

// keepBoundAddresses keeps the addresses this process really listens on:
// this server's own (listeners change only at a restart), and a peer's
// where the new config says port 0 (Bind chose the port at start).
// Otherwise a peer's configured address is taken: it may have moved.
func keepBoundAddresses(self string, cur, org *config.Org) {
	for i := range org.Servers {
		ns := &org.Servers[i]
		cs := cur.ServerByName(ns.Name)
		if cs == nil {
			continue
		}
		for _, f := range []struct{ running, configured *string }{
			{&cs.Listen.SMTP, &ns.Listen.SMTP}, {&cs.Listen.IMAP, &ns.Listen.IMAP}, {&cs.Listen.IMAPS, &ns.Listen.IMAPS},
			{&cs.Listen.POP3, &ns.Listen.POP3}, {&cs.Listen.POP3S, &ns.Listen.POP3S}, {&cs.Listen.Admin, &ns.Listen.Admin},
			{&cs.Listen.Gossip, &ns.Listen.Gossip},
		} {
			if ns.Name == self || sameListen(*f.running, *f.configured) {
				*f.configured = *f.running
			}
		}
	}
}

func sameListen(running, configured string) bool {
	if running == configured {
		return true
	}
	rh, _, err1 := net.SplitHostPort(running)
	ch, cp, err2 := net.SplitHostPort(configured)
	return err1 == nil && err2 == nil && cp == "0" && rh == ch
}

// Reload reloads the configuration on every server of the cluster (SIGHUP
// in `pfrouter serve`). Each server checks and applies it on its own; the
// errors of those that refused are returned together.
func (c *Cluster) Reload(ctx context.Context) error {
	var errs []error
	for _, name := range c.Order {
		if err := c.Nodes[name].Reload(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

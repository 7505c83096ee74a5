package node

import (
	"context"
	"crypto/tls"
	"errors"

	"pfrouter/imapd"
	"pfrouter/imapfront"
	"pfrouter/pop3d"
)

// startAccess brings up the POP3/IMAP4 access tier (SPEC A1–A9): every
// server is a front end that authenticates with the auth policy, then
// serves a local mailbox or proxies to the server that holds it.
func (n *Node) startAccess(ls Listeners, tlsCfg *tls.Config) error {
	// tlsCfg is the listeners' config (servercred WrapServerTLS: users get
	// the user certificate, peer servers the organization identity);
	// connections to peers use ClientTLS, whose certificate is the proxied
	// login's credential (SASL EXTERNAL).
	peerTLS := n.Identity.ClientTLS
	if ls["imap"] != nil || ls["imaps"] != nil {
		var err error
		if n.IMAP, err = imapd.New(imapd.Options{ServerName: n.Name, Directory: n.Directory, Store: n.Store, Logger: n.Log,
			MaxAppendSize: int64(n.Org.Limits.MaxMessageSize),
			Referrals:     &referrer{n: n, tls: peerTLS}}); err != nil {
			return err
		}
		front := imapfront.New(imapfront.Options{ServerName: n.Name, Policy: meteredPolicy{n.Auth, n.Telemetry.Metrics()}, Local: n.IMAP, TLSConfig: tlsCfg,
			Logger: n.Log, PeerTLS: peerTLS,
			MaxConnsPerIP: n.Org.Access.MaxConnectionsPerIP, MaxConnsPerUser: n.Org.Access.MaxConnectionsPerUser})
		if l := ls["imap"]; l != nil {
			n.serve("imap", func() error { return front.Serve(l) })
		}
		if l := ls["imaps"]; l != nil {
			n.serve("imaps", func() error { return front.ServeTLS(l) })
		}
		n.closers = append(n.closers, func(context.Context) error { front.Close(); return n.IMAP.Close() })
	}
	if ls["pop3"] != nil || ls["pop3s"] != nil {
		pa := pop3d.NewFront(pop3d.FrontOptions{Server: n.Name, Policy: meteredPolicy{n.Auth, n.Telemetry.Metrics()},
			Store: n.Store, PeerTLS: peerTLS, Logger: n.Log})
		mk := func(cfg *tls.Config) (*pop3d.Server, error) {
			return pop3d.New(pop3d.Options{Hostname: n.Name, TLSConfig: cfg, Auth: pa, Logger: n.Log, PlaintextAllowed: n.Auth.PlainAllowed,
				MaxConnsPerIP: n.Org.Access.MaxConnectionsPerIP, MaxConnsPerUser: n.Org.Access.MaxConnectionsPerUser})
		}
		if l := ls["pop3"]; l != nil {
			s, err := mk(tlsCfg)
			if err != nil {
				return err
			}
			n.serve("pop3", func() error { return ignoreClosed(s.Serve(l)) })
			n.closers = append(n.closers, func(context.Context) error { return s.Close() })
		}
		if l := ls["pop3s"]; l != nil {
			s, err := mk(nil)
			if err != nil {
				return err
			}
			tl := tls.NewListener(l, tlsCfg)
			n.serve("pop3s", func() error { return ignoreClosed(s.Serve(tl)) })
			n.closers = append(n.closers, func(context.Context) error { return s.Close() })
		}
	}
	return nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, pop3d.ErrServerClosed) {
		return nil
	}
	return err
}

package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"pfrouter/auth"
	"pfrouter/directory"
	"pfrouter/imapfront"
	"pfrouter/referral"
)

// referrer lets imapd read public folders that have no replica here from
// a replica server (issue 13): decisions from the directory and link state
// (package referral), connections over the server-to-server login.
type referrer struct {
	n *Node
	// tls is the client config for server `peer` (servercred ClientTLS):
	// its certificate is the login (SASL EXTERNAL).
	tls func(peer string) *tls.Config
}

func (r *referrer) Decide(f *directory.Folder, exclude []string) referral.Decision {
	return referral.Decide(r.n.Directory.Snapshot(), r.n.LinkState.Graph(), r.n.Name, f, exclude)
}

// Dial logs in to the replica server's IMAP listener as this server acting
// for the user's referral session.
func (r *referrer) Dial(ctx context.Context, server, user string) (net.Conn, error) {
	srv := r.n.Directory.Snapshot().Server(server)
	if srv == nil || srv.Listen.IMAP == "" {
		return nil, fmt.Errorf("server %s has no IMAP listener in the directory", server)
	}
	return imapfront.DialAuthenticated(ctx, srv.Listen.IMAP, r.tls(server), auth.ReferralAuthzID(user))
}

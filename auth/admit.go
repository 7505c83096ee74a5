package auth

import (
	"context"
	"strings"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/servercred"
)

func isServerLogin(username string) bool { return servercred.IsServerName(username) }

// admit applies the account rules (A3, A4) and the mailbox location rules
// (A5) to a user whose credentials are proven.
func (p *Policy) admit(r Request, snap *directory.Snapshot, u *directory.User, via string) (Decision, error) {
	if err := p.accountAllowed(r, u); err != nil {
		return Decision{}, err
	}
	d := Decision{User: u, Server: u.Server, ViaServer: via, Mechanism: strings.ToUpper(r.Mechanism)}
	if r.Protocol == SMTP {
		// Submission works on any server: A5 is about mailbox sessions.
		d.Local = u.Server == p.server
		p.accepted(r, d)
		return d, nil
	}
	if u.Server == p.server {
		d.Local = true
		p.accepted(r, d)
		return d, nil
	}
	if via != "" {
		// A peer proxies only to the mailbox server; anything else is a
		// stale directory on one side, and forwarding again could loop.
		return Decision{}, p.refused(r, refuse(TempFail, "mailbox of %s is not on server %s", u.Name, p.server),
			"server login for a mailbox elsewhere", "via", via, "mailbox_server", u.Server)
	}
	mbx := snap.Server(u.Server)
	if mbx == nil {
		return Decision{}, p.refused(r, refuse(TempFail, "mailbox server unavailable"), "mailbox server not in directory", "mailbox_server", u.Server)
	}
	frontSite := ""
	if me := snap.Server(p.server); me != nil {
		frontSite = me.Site
	}
	if mbx.Site != frontSite && p.access().CrossSite == config.CrossSiteRefuse {
		// Exchange 2007 with AllowCrossSiteSessions=false logs event 1008.
		p.log.Warn("cross-site POP3/IMAP4 session refused", "event_id", 1008, "protocol", string(r.Protocol),
			"user", u.Name, "mailbox_site", mbx.Site, "mailbox_server", mbx.Name, "frontend", p.server,
			"frontend_site", frontSite, "remote", addrString(r.Remote))
		return Decision{}, refuse(CrossSite, "your mailbox is in site %s; connect to a server in that site", mbx.Site)
	}
	d.ProxyTo = listenFor(mbx.Listen, r.Protocol)
	if d.ProxyTo == "" {
		return Decision{}, p.refused(r, refuse(TempFail, "mailbox server unavailable"),
			"mailbox server has no plain listener for the protocol", "mailbox_server", mbx.Name)
	}
	p.accepted(r, d)
	return d, nil
}

// accountAllowed is A3 and A4: account kind and per-protocol flags.
func (p *Policy) accountAllowed(r Request, u *directory.User) error {
	switch u.Kind {
	case config.KindGuest:
		return p.refused(r, refuse(Refused, "guest accounts cannot log in over POP3 or IMAP4"), "guest account", "account", u.Name)
	case config.KindAdmin:
		if r.Protocol == SMTP {
			break // A4 bars the admin mailbox from POP3/IMAP4, not submission
		}
		return p.refused(r, refuse(Refused, "administrator mailboxes cannot be opened over POP3 or IMAP4"), "admin account", "account", u.Name)
	}
	if strings.EqualFold(u.Name, "anonymous") {
		return p.refused(r, refuse(Refused, "anonymous logins are not allowed"), "anonymous account")
	}
	switch r.Protocol {
	case IMAP:
		if !u.IMAPEnabled {
			return p.refused(r, refuse(Disabled, "IMAP4 is disabled for this account"), "imap_enabled is false", "account", u.Name)
		}
	case POP3:
		if !u.POPEnabled {
			return p.refused(r, refuse(Disabled, "POP3 is disabled for this account"), "pop_enabled is false", "account", u.Name)
		}
	}
	return nil
}

func listenFor(l config.Listen, proto Protocol) string {
	switch proto {
	case IMAP:
		return l.IMAP
	case POP3:
		return l.POP3
	case SMTP:
		return l.SMTP
	}
	return ""
}

func (p *Policy) accepted(r Request, d Decision) {
	p.log.Info("login accepted", "protocol", string(r.Protocol), "user", d.User.Name, "mechanism", d.Mechanism,
		"tls", r.TLS, "remote", addrString(r.Remote), "local", d.Local, "mailbox_server", d.Server,
		"proxy_to", d.ProxyTo, "via", d.ViaServer)
}

// serverLogin is a peer server logging in on a user's behalf with SASL
// EXTERNAL: the TLS client certificate proves the peer (servercred), the
// peer must be a server in the directory, and AuthzID names the user whose
// mailbox is here. The user's kind and flags still apply; the session is
// local. Failures count against the client like wrong passwords.
func (p *Policy) serverLogin(ctx context.Context, r Request) (Decision, error) {
	var peer string
	ok := false
	if r.TLSState != nil {
		peer, ok = servercred.PeerServer(*r.TLSState)
	}
	if !ok {
		// Not proven: the connecting address is locked out and charged
		// like a wrong password.
		if err := p.checkLock(ctx, r, r.Remote); err != nil {
			return Decision{}, err
		}
		return Decision{}, p.failed(ctx, r, "EXTERNAL without a verified organization certificate")
	}
	r.Username = servercred.Prefix + peer
	if snapNow := p.snapshot(); snapNow == nil || snapNow.Server(peer) == nil {
		if err := p.checkLock(ctx, r, r.Remote); err != nil {
			return Decision{}, err
		}
		return Decision{}, p.failed(ctx, r, "certificate names server "+peer+", which is not in the directory")
	}
	if r.AuthzID == "" {
		return Decision{}, p.refused(r, refuse(AuthFailed, "a server login must name the user it acts for"), "server login without authorization identity", "via", peer)
	}
	if err := p.checkLock(ctx, r, r.Client); err != nil {
		return Decision{}, err
	}
	snap := p.snapshot()
	if snap == nil {
		return Decision{}, p.refused(r, refuse(TempFail, "directory not available"), "no directory")
	}
	if name, ok := strings.CutPrefix(r.AuthzID, ReferralPrefix); ok {
		return p.referralLogin(r, snap, name, peer)
	}
	u := lookupUser(snap, r.AuthzID)
	if u == nil {
		return Decision{}, p.refused(r, refuse(AuthFailed, "invalid credentials"), "server login for an unknown user", "via", peer, "authzid", r.AuthzID)
	}
	r.Username = u.Name // log the user; ViaServer says who proved it
	return p.admit(r, snap, u, peer)
}

package auth

import (
	"strings"

	"pfrouter/directory"
)

// ReferralPrefix marks a server login's authorization identity as a
// public folder referral (issue 13): the peer reads public folders that
// have replicas here for a user whose mailbox may be anywhere. Without it a
// server login is a proxied mailbox session and must land on the mailbox
// server (A5).
const ReferralPrefix = "referral:"

// ReferralAuthzID is the authorization identity a server sends to open a
// referral session for user.
func ReferralAuthzID(user string) string { return ReferralPrefix + user }

// referralLogin admits a verified peer's referral session: the user's
// account rules apply (A3, A4), the session is served here, public
// folders only. Only IMAP has public folders.
func (p *Policy) referralLogin(r Request, snap *directory.Snapshot, name, peer string) (Decision, error) {
	if r.Protocol != IMAP {
		return Decision{}, p.refused(r, refuse(AuthFailed, "referral sessions are IMAP only"), "referral login over "+string(r.Protocol), "via", peer)
	}
	u := lookupUser(snap, name)
	if u == nil {
		return Decision{}, p.refused(r, refuse(AuthFailed, "invalid credentials"), "referral login for an unknown user", "via", peer, "authzid", r.AuthzID)
	}
	r.Username = u.Name
	if err := p.accountAllowed(r, u); err != nil {
		return Decision{}, err
	}
	d := Decision{User: u, Server: u.Server, Local: true, PublicOnly: true, ViaServer: peer, Mechanism: strings.ToUpper(r.Mechanism)}
	p.accepted(r, d)
	return d, nil
}

package auth

import (
	"testing"

	"pfrouter/config"
)

// Issue 13: a peer server opens a public-folders-only referral session for
// a user whose mailbox is elsewhere; account rules still apply; users
// cannot ask for one; POP3 has no public folders.
func TestReferralLogin(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", ""), config.LoginSecure, config.CrossSiteRefuse)
	req := func(proto Protocol, authz, user, pw string) Request {
		return Request{Protocol: proto, Mechanism: MechPlain, AuthzID: authz, Username: user, Password: pw, TLS: true, Remote: client}
	}
	states := peerStates(t)
	// srv is ex3 proven by its certificate ("ex3"), or a caller without
	// one ("user"), logging in with SASL EXTERNAL.
	srv := func(proto Protocol, authz, peer string) Request {
		return Request{Protocol: proto, Mechanism: MechExternal, AuthzID: authz, TLS: true, TLSState: states[peer], Remote: client}
	}
	// dan's mailbox is on ex2, not here (ex1): a referral session is still served here.
	dec, err := p.Authenticate(ctx, srv(IMAP, ReferralAuthzID("dan"), "ex3"))
	if err != nil || !dec.Local || !dec.PublicOnly || dec.ViaServer != "ex3" || dec.User.Name != "dan" {
		t.Fatalf("referral login for dan: %+v %v", dec, err)
	}
	// Without the prefix it is a proxied mailbox login and is refused (A5).
	if _, err := p.Authenticate(ctx, srv(IMAP, "dan", "ex3")); kindOf(err) != TempFail {
		t.Fatalf("mailbox login for dan here: %v", err)
	}
	for _, c := range []struct {
		name string
		r    Request
		want Kind
	}{
		{"no certificate", srv(IMAP, ReferralAuthzID("dan"), "user"), AuthFailed},
		{"unknown user", srv(IMAP, ReferralAuthzID("nobody"), "ex3"), AuthFailed},
		{"imap disabled", srv(IMAP, ReferralAuthzID("carol"), "ex3"), Disabled},
		{"guest", srv(IMAP, ReferralAuthzID("guest"), "ex3"), Refused},
		{"pop3", srv(POP3, ReferralAuthzID("dan"), "ex3"), AuthFailed},
		{"user asks for a referral", req(IMAP, ReferralAuthzID("alice"), "alice", "alice-pw"), AuthFailed},
	} {
		if d, err := p.Authenticate(ctx, c.r); kindOf(err) != c.want {
			t.Errorf("%s: %+v %v, want %v", c.name, d, err, c.want)
		}
	}
}

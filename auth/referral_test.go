package auth

import (
	"testing"

	"pfrouter/config"
	"pfrouter/servercred"
)

// Issue 13: a peer server opens a public-folders-only referral session for
// a user whose mailbox is elsewhere; account rules still apply; users
// cannot ask for one; POP3 has no public folders.
func TestReferralLogin(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", ""), config.LoginSecure, config.CrossSiteRefuse)
	req := func(proto Protocol, authz, user, pw string) Request {
		return Request{Protocol: proto, Mechanism: MechPlain, AuthzID: authz, Username: user, Password: pw, TLS: true, Remote: client}
	}
	srv := func(proto Protocol, authz, secret string) Request {
		return req(proto, authz, servercred.Username("ex3"), servercred.Password(secret, "ex3"))
	}
	// dan's mailbox is on ex2, not here (ex1): a referral session is still served here.
	dec, err := p.Authenticate(ctx, srv(IMAP, ReferralAuthzID("dan"), "org-secret"))
	if err != nil || !dec.Local || !dec.PublicOnly || dec.ViaServer != "ex3" || dec.User.Name != "dan" {
		t.Fatalf("referral login for dan: %+v %v", dec, err)
	}
	// Without the prefix it is a proxied mailbox login and is refused (A5).
	if _, err := p.Authenticate(ctx, srv(IMAP, "dan", "org-secret")); kindOf(err) != TempFail {
		t.Fatalf("mailbox login for dan here: %v", err)
	}
	for _, c := range []struct {
		name string
		r    Request
		want Kind
	}{
		{"wrong secret", srv(IMAP, ReferralAuthzID("dan"), "wrong-secret"), AuthFailed},
		{"unknown user", srv(IMAP, ReferralAuthzID("nobody"), "org-secret"), AuthFailed},
		{"imap disabled", srv(IMAP, ReferralAuthzID("carol"), "org-secret"), Disabled},
		{"guest", srv(IMAP, ReferralAuthzID("guest"), "org-secret"), Refused},
		{"pop3", srv(POP3, ReferralAuthzID("dan"), "org-secret"), AuthFailed},
		{"user asks for a referral", req(IMAP, ReferralAuthzID("alice"), "alice", "alice-pw"), AuthFailed},
	} {
		if d, err := p.Authenticate(ctx, c.r); kindOf(err) != c.want {
			t.Errorf("%s: %+v %v, want %v", c.name, d, err, c.want)
		}
	}
}

package auth

import (
	"context"
	"crypto/tls"
	"net"
	"pfrouter/internal/trusttest"
	"strings"
	"sync"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/servercred"
)

var ctx = context.Background()

func login(p *Policy, proto Protocol, mech, user, pw string, tls bool) (Decision, error) {
	return p.Authenticate(ctx, Request{Protocol: proto, Mechanism: mech, Username: user, Password: pw, TLS: tls, Remote: client})
}

// A2: each login type x TLS x mechanism; every refusal logs a line.
func TestA2LoginTypes(t *testing.T) {
	d := newDir(t, "", "")
	type row struct {
		loginType string
		tls       bool
		mech      string
		ok        bool
	}
	var rows []row
	for _, lt := range []string{config.LoginPlainText, config.LoginPlainTextAuth, config.LoginSecure} {
		for _, tls := range []bool{false, true} {
			for _, mech := range []string{MechLogin, MechUser, MechPlain, MechSCRAM256} {
				ok := tls || lt == config.LoginPlainText || (lt == config.LoginPlainTextAuth && mech == MechSCRAM256)
				rows = append(rows, row{lt, tls, mech, ok})
			}
		}
	}
	for _, r := range rows {
		name := r.loginType + "/" + r.mech
		if r.tls {
			name += "/tls"
		}
		t.Run(name, func(t *testing.T) {
			p, logs := newPolicy(t, d, r.loginType, "")
			if got := p.Allowed(r.mech, r.tls); got != r.ok {
				t.Fatalf("Allowed = %v, want %v", got, r.ok)
			}
			var err error
			if r.mech == MechSCRAM256 {
				_, err = scramLogin(t, p, "alice", "alice-pw", r.tls)
			} else {
				_, err = login(p, IMAP, r.mech, "alice", "alice-pw", r.tls)
			}
			if r.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !r.ok {
				if kindOf(err) != PrivacyRequired {
					t.Fatalf("err = %v, want PrivacyRequired", err)
				}
				if code := err.(*Error).IMAPCode(); code != "PRIVACYREQUIRED" {
					t.Errorf("IMAP code %q", code)
				}
				if n := len(logs.lines("login refused")); n != 1 {
					t.Errorf("%d refusal log lines, want 1:\n%s", n, logs)
				}
			}
		})
	}
	// LOGINDISABLED is advertised exactly when plain login is not allowed.
	p, _ := newPolicy(t, d, config.LoginPlainTextAuth, "")
	if p.PlainAllowed(false) || !p.PlainAllowed(true) {
		t.Error("PlainTextAuthentication: plain must need TLS")
	}
	if got := strings.Join(p.SASLMechanisms(false), " "); got != "SCRAM-SHA-256" {
		t.Errorf("mechanisms before TLS = %q", got)
	}
}

func TestPasswordsAndNames(t *testing.T) {
	d := newDir(t, "", hashedUser(t))
	p, logs := newPolicy(t, d, config.LoginSecure, "")
	if dec, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); err != nil || !dec.Local || dec.User.Name != "alice" {
		t.Fatalf("alice: %+v %v", dec, err)
	}
	if dec, err := login(p, IMAP, MechLogin, "alice@X.example", "alice-pw", true); err != nil || dec.User.Name != "alice" {
		t.Fatalf("login by address: %+v %v", dec, err)
	}
	// bcrypt password_hash.
	if _, err := login(p, POP3, MechUser, "hashed", "hash-pw", true); err != nil {
		t.Fatalf("bcrypt login: %v", err)
	}
	wrong, err1 := login(p, IMAP, MechLogin, "hashed", "nope", true)
	_, err2 := login(p, IMAP, MechLogin, "nobody", "nope", true)
	if kindOf(err1) != AuthFailed || kindOf(err2) != AuthFailed || wrong.User != nil {
		t.Fatalf("wrong password / unknown user: %v / %v", err1, err2)
	}
	// The client cannot tell an unknown user from a wrong password.
	if err1.Error() != err2.Error() {
		t.Errorf("messages differ: %q vs %q", err1, err2)
	}
	if !strings.Contains(logs.String(), "reason=\"unknown user\"") {
		t.Errorf("the log should say why:\n%s", logs)
	}
	// A user may not act as another.
	_, err := p.Authenticate(ctx, Request{Protocol: IMAP, Mechanism: MechPlain, AuthzID: "dan", Username: "alice", Password: "alice-pw", TLS: true})
	if kindOf(err) != AuthFailed {
		t.Errorf("authzid of another user: %v", err)
	}
	if _, err := p.Authenticate(ctx, Request{Protocol: IMAP, Mechanism: MechPlain, AuthzID: "alice", Username: "alice", Password: "alice-pw", TLS: true}); err != nil {
		t.Errorf("authzid = self: %v", err)
	}
	if _, err := login(p, IMAP, "CRAM-MD5", "alice", "alice-pw", true); kindOf(err) != AuthFailed {
		t.Errorf("unknown mechanism: %v", err)
	}
}

// A3: per-protocol flags.
func TestA3ProtocolFlags(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", ""), config.LoginSecure, "")
	for _, c := range []struct {
		user, pw string
		proto    Protocol
		want     Kind
	}{
		{"carol", "carol-pw", IMAP, Disabled},
		{"carol", "carol-pw", POP3, 0},
		{"pat", "pat-pw", POP3, Disabled},
		{"pat", "pat-pw", IMAP, 0},
	} {
		mech := MechLogin
		if c.proto == POP3 {
			mech = MechUser
		}
		_, err := login(p, c.proto, mech, c.user, c.pw, true)
		if kindOf(err) != c.want {
			t.Errorf("%s over %s: %v, want kind %v", c.user, c.proto, err, c.want)
		}
		if err != nil && err.(*Error).POP3Code() != "AUTH" {
			t.Errorf("POP3 code %q", err.(*Error).POP3Code())
		}
	}
}

// A4: guests and admins are refused (after the password), anonymous too.
func TestA4GuestAdminAnonymous(t *testing.T) {
	p, logs := newPolicy(t, newDir(t, "", "  - {name: anonymous, addresses: [anon@x.example], mailbox_store: m1, password: anon-pw}\n"), config.LoginSecure, "")
	for _, c := range []struct{ user, pw string }{{"guest", "guest-pw"}, {"admin", "admin-pw"}, {"anonymous", "anon-pw"}} {
		for _, proto := range []Protocol{IMAP, POP3} {
			_, err := login(p, proto, MechPlain, c.user, c.pw, true)
			if kindOf(err) != Refused || err.(*Error).IMAPCode() != "CONTACTADMIN" {
				t.Errorf("%s over %s: %v", c.user, proto, err)
			}
		}
	}
	// A wrong password does not reveal that the account is an admin.
	if _, err := login(p, IMAP, MechLogin, "admin", "guess", true); kindOf(err) != AuthFailed {
		t.Errorf("admin with wrong password: %v", err)
	}
	if n := len(logs.lines("login refused")); n != 7 {
		t.Errorf("%d refusal lines, want 7", n)
	}
}

// A4: a flag change applies at the next login, without a restart.
func TestA4FlagChangeAtNextLogin(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", ""), config.LoginSecure, "")
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); err != nil {
		t.Fatal(err)
	}
	p.SetDirectory(newDir(t, "", "", "mailbox_store: m1, password: alice-pw}", "mailbox_store: m1, password: alice-pw, imap_enabled: false}"))
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); kindOf(err) != Disabled {
		t.Fatalf("after imap_enabled: false: %v", err)
	}
	if _, err := login(p, POP3, MechUser, "alice", "alice-pw", true); err != nil {
		t.Fatalf("POP3 still enabled: %v", err)
	}
	p.SetDirectory(newDir(t, "", ""))
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); err != nil {
		t.Fatalf("re-enabled: %v", err)
	}
}

// A5: same site always proxies; other site proxies or refuses with event 1008.
func TestA5CrossSite(t *testing.T) {
	d := newDir(t, "", "")
	for _, policy := range []string{config.CrossSiteProxy, config.CrossSiteRefuse} {
		p, logs := newPolicy(t, d, config.LoginSecure, policy)
		dec, err := login(p, IMAP, MechLogin, "dan", "dan-pw", true)
		if err != nil || dec.Local || dec.Server != "ex2" || dec.ProxyTo != "127.0.0.1:1432" {
			t.Errorf("%s: same-site dan: %+v %v", policy, dec, err)
		}
		dec, err = login(p, POP3, MechUser, "bob", "bob-pw", true)
		if policy == config.CrossSiteProxy {
			if err != nil || dec.Local || dec.ProxyTo != "127.0.0.1:1103" {
				t.Errorf("proxy: bob over POP3: %+v %v", dec, err)
			}
			continue
		}
		if kindOf(err) != CrossSite {
			t.Fatalf("refuse: bob: %+v %v", dec, err)
		}
		lines := logs.lines("event_id=1008")
		if len(lines) != 1 {
			t.Fatalf("want one event 1008 line:\n%s", logs)
		}
		for _, want := range []string{"user=bob", "mailbox_site=berlin", "mailbox_server=ex3", "frontend=ex1"} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("1008 line lacks %q: %s", want, lines[0])
			}
		}
	}
}

// foreignClient presents a certificate naming ex3 from another
// organization's CA to a listener that asks for a certificate but does not
// verify it: the state has the certificate and no verified chain.
func foreignClient(t *testing.T) *tls.Config {
	c := trusttest.Identity(t, trusttest.OtherSecret, "ex3").ClientTLS("ex1")
	c.InsecureSkipVerify, c.VerifyConnection = true, nil
	return c
}

// peerStates are the TLS states a mailbox server (ex1) sees from callers:
// a verified org server, an unverified certificate of another organization, a server that is
// not in the directory, and a user without a certificate.
func peerStates(t *testing.T) map[string]*tls.ConnectionState {
	me := trusttest.Identity(t, trusttest.Secret, "ex1")
	user := &tls.Config{Certificates: me.ServerTLS().Certificates, GetCertificate: me.ServerTLS().GetCertificate}
	st := func(client *tls.Config, server *tls.Config) *tls.ConnectionState {
		cs := trusttest.ServerState(t, client, server)
		return &cs
	}
	return map[string]*tls.ConnectionState{
		"ex3":     st(trusttest.Identity(t, trusttest.Secret, "ex3").ClientTLS("ex1"), me.WrapServerTLS(user)),
		"foreign": st(foreignClient(t), &tls.Config{GetCertificate: user.GetCertificate, ClientAuth: tls.RequestClientCert}),
		"ex9":     st(trusttest.Identity(t, trusttest.Secret, "ex9").ClientTLS("ex1"), me.WrapServerTLS(user)),
		"user":    st(&tls.Config{InsecureSkipVerify: true, ServerName: "mail.example"}, me.WrapServerTLS(user)),
	}
}

// S5/A5: a peer server logs in on a user's behalf with SASL EXTERNAL, proven
// by its organization certificate; it must be in the directory; the user's
// kind and flags still apply; the session is local.
func TestServerOnBehalf(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", ""), config.LoginSecure, config.CrossSiteRefuse)
	states := peerStates(t)
	req := func(authz, peer string) Request {
		return Request{Protocol: IMAP, Mechanism: MechExternal, AuthzID: authz, TLS: true, TLSState: states[peer], Remote: client}
	}
	dec, err := p.Authenticate(ctx, req("alice", "ex3"))
	if err != nil || !dec.Local || dec.ViaServer != "ex3" || dec.User.Name != "alice" {
		t.Fatalf("server login for alice: %+v %v", dec, err)
	}
	for _, c := range []struct {
		authz, peer string
		want        Kind
	}{
		{"alice", "foreign", AuthFailed}, // another organization's CA
		{"alice", "ex9", AuthFailed},     // a valid certificate, but not a server in the directory
		{"alice", "user", AuthFailed},    // no certificate
		{"alice", "none", AuthFailed},    // no TLS state at all
		{"", "ex3", AuthFailed},
		{"nobody", "ex3", AuthFailed},
		{"carol", "ex3", Disabled},
		{"guest", "ex3", Refused},
		{"dan", "ex3", TempFail}, // mailbox not here: never forward again
	} {
		if _, err := p.Authenticate(ctx, req(c.authz, c.peer)); kindOf(err) != c.want {
			t.Errorf("authz %q peer %q: %v, want %v", c.authz, c.peer, err, c.want)
		}
	}
	// EXTERNAL without TLS is never allowed.
	r := req("alice", "ex3")
	r.TLS, r.TLSState = false, nil
	if _, err := p.Authenticate(ctx, r); err == nil {
		t.Error("EXTERNAL without TLS accepted")
	}
	// The old replayable credential (server:ex3 + HMAC of the name) is dead.
	old := Request{Protocol: IMAP, Mechanism: MechPlain, AuthzID: "alice", Username: servercred.Username("ex3"),
		Password: trusttest.LegacyPassword(trusttest.Secret, "ex3"), TLS: true, TLSState: states["ex3"], Remote: client}
	if _, err := p.Authenticate(ctx, old); kindOf(err) != AuthFailed {
		t.Errorf("PLAIN as server:ex3 with the HMAC: %v", err)
	}
}

// Failed server logins count in the same limiter as users' (issue 10: a
// 3-character secret was found online in 731 tries).
func TestServerLoginRateLimited(t *testing.T) {
	states := peerStates(t)
	p := New(Options{Directory: newDir(t, "", ""), ServerName: "ex1", LoginType: config.LoginSecure,
		MaxFailures: 3, FailureWindow: time.Minute, Lockout: 2 * time.Minute, FailureDelay: -1})
	tries := []Request{
		{Protocol: IMAP, Mechanism: MechPlain, AuthzID: "alice", Username: "server:ex3", Password: "guess1", TLS: true, Remote: client},
		{Protocol: IMAP, Mechanism: MechExternal, AuthzID: "alice", TLS: true, TLSState: states["foreign"], Remote: client},
		{Protocol: POP3, Mechanism: MechExternal, AuthzID: "alice", TLS: true, TLSState: states["ex9"], Remote: client},
	}
	for i, r := range tries {
		if _, err := p.Authenticate(ctx, r); kindOf(err) != AuthFailed {
			t.Fatalf("try %d: %v", i, err)
		}
	}
	again := Request{Protocol: IMAP, Mechanism: MechExternal, AuthzID: "alice", TLS: true, TLSState: states["user"], Remote: client}
	if _, err := p.Authenticate(ctx, again); kindOf(err) != RateLimited {
		t.Fatalf("after three failed server logins the client is not locked out: %v", err)
	}
	// A proven server is locked out by the client it reports, not by its
	// own address (issue 14), so it still gets in.
	good := Request{Protocol: IMAP, Mechanism: MechExternal, AuthzID: "alice", TLS: true, TLSState: states["ex3"], Remote: client}
	if _, err := p.Authenticate(ctx, good); err != nil {
		t.Fatalf("proven server from the locked address: %v", err)
	}
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); kindOf(err) != RateLimited {
		t.Fatalf("user login from the locked-out address: %v", err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	var delays []time.Duration
	p := New(Options{Directory: newDir(t, "", ""), ServerName: "ex1", LoginType: config.LoginSecure, Now: clock.now,
		MaxFailures: 3, FailureWindow: time.Minute, Lockout: 2 * time.Minute, FailureDelay: 100 * time.Millisecond})
	p.wait = func(_ context.Context, d time.Duration) { delays = append(delays, d) }
	for i := 0; i < 2; i++ {
		if _, err := login(p, IMAP, MechLogin, "alice", "bad", true); kindOf(err) != AuthFailed {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Failures are slowed, more with each one.
	if len(delays) != 2 || delays[0] != 100*time.Millisecond || delays[1] != 200*time.Millisecond {
		t.Errorf("delays = %v", delays)
	}
	// Failures older than the window do not count.
	clock.add(2 * time.Minute)
	login(p, IMAP, MechLogin, "alice", "bad", true)
	login(p, IMAP, MechLogin, "alice", "bad", true)
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); err != nil {
		t.Fatalf("two recent failures must not lock out: %v", err)
	}
	login(p, IMAP, MechLogin, "alice", "bad", true) // third in the window
	_, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true)
	if kindOf(err) != RateLimited || err.(*Error).IMAPCode() != "UNAVAILABLE" || err.(*Error).POP3Code() != "SYS/TEMP" {
		t.Fatalf("locked-out client with the right password: %v", err)
	}
	if _, err := p.SCRAM(ctx, IMAP, true, client); kindOf(err) != RateLimited {
		t.Errorf("SCRAM while locked out: %v", err)
	}
	// Another address is not affected.
	other := Request{Protocol: IMAP, Mechanism: MechLogin, Username: "alice", Password: "alice-pw", TLS: true,
		Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 10), Port: 1}}
	if _, err := p.Authenticate(ctx, other); err != nil {
		t.Errorf("other client: %v", err)
	}
	clock.add(2*time.Minute + time.Second)
	if _, err := login(p, IMAP, MechLogin, "alice", "alice-pw", true); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
}

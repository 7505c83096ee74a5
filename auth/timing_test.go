package auth

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"pfrouter/config"
)

// bcryptCalls replaces p's bcrypt comparison with one that records the
// cost of each hash it is given (and still compares).
func bcryptCalls(p *Policy) *[]int {
	var costs []int
	p.pw.compare = func(hash, pw []byte) error {
		c, _ := bcrypt.Cost(hash)
		costs = append(costs, c)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	return &costs
}

// An unknown user name costs exactly what a known user's wrong password
// costs: one bcrypt comparison at the directory's cost when users have
// hashes, none (a constant-time compare) when they have plain passwords.
// Unknown and known names are then indistinguishable by timing (issue 14).
func TestUnknownUserCostsWhatAWrongPasswordCosts(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	var edits []string
	for _, u := range []string{"alice", "dan", "bob", "carol", "pat", "guest", "admin"} {
		edits = append(edits, "password: "+u+"-pw", fmt.Sprintf("password_hash: %q", h))
	}
	for _, org := range []struct {
		name  string
		edits []string
		want  []int // bcrypt costs per login
	}{
		{"hashed", edits, []int{bcrypt.MinCost + 1}},
		{"plain", nil, nil},
	} {
		t.Run(org.name, func(t *testing.T) {
			p, _ := newPolicy(t, newDir(t, "", "", org.edits...), config.LoginPlainText, "")
			costs := bcryptCalls(p)
			for _, user := range []string{"alice", "nosuchuser", "nobody@x.example", "nobody@elsewhere.example"} {
				*costs = nil
				_, err := p.Authenticate(context.Background(), Request{Protocol: IMAP, Mechanism: MechLogin,
					Username: user, Password: "wrong", Remote: client})
				if kindOf(err) != AuthFailed {
					t.Fatalf("%s: %v, want an authentication failure", user, err)
				}
				if fmt.Sprint(*costs) != fmt.Sprint(org.want) {
					t.Errorf("%s: bcrypt comparisons at costs %v, want %v", user, *costs, org.want)
				}
			}
		})
	}
}

// A front end's address locked out by users failing to log in from it
// directly does not block the logins it proxies: a server login is locked
// out by the client address the front end reports (issue 14).
func TestProxiedLoginLockoutAppliesToTheReportedClient(t *testing.T) {
	ex3 := peerStates(t)["ex3"]
	p := New(Options{Directory: newDir(t, "", ""), ServerName: "ex1", LoginType: config.LoginSecure,
		MaxFailures: 2, FailureWindow: time.Minute, Lockout: time.Minute, FailureDelay: -1})
	frontEnd := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 3), Port: 50000}
	attacker := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 66), Port: 40000}
	user := &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40001}
	fail := func(from net.Addr) {
		_, err := p.Authenticate(ctx, Request{Protocol: IMAP, Mechanism: MechLogin, Username: "alice", Password: "bad", TLS: true, Remote: from})
		if kindOf(err) != AuthFailed && kindOf(err) != RateLimited {
			t.Fatalf("bad password: %v", err)
		}
	}
	for range 3 {
		fail(frontEnd) // someone on the front end's host
		fail(attacker)
	}
	if err := p.Check(ctx, IMAP, MechExternal, true, frontEnd); err != nil {
		t.Fatalf("Check before a proxied AUTHENTICATE EXTERNAL: %v", err)
	}
	proxied := func(client net.Addr) error {
		_, err := p.Authenticate(ctx, Request{Protocol: IMAP, Mechanism: MechExternal, AuthzID: "alice",
			TLS: true, TLSState: ex3, Remote: frontEnd, Client: client})
		return err
	}
	if err := proxied(user); err != nil {
		t.Fatalf("proxied login for an innocent client from a locked front end address: %v", err)
	}
	if err := proxied(attacker); kindOf(err) != RateLimited {
		t.Fatalf("proxied login for a locked-out client: %v, want rate limited", err)
	}
	// A direct login from the locked address is still refused.
	if _, err := p.Authenticate(ctx, Request{Protocol: IMAP, Mechanism: MechLogin, Username: "alice", Password: "alice-pw", TLS: true, Remote: frontEnd}); kindOf(err) != RateLimited {
		t.Fatalf("direct login from a locked address: %v, want rate limited", err)
	}
}

package auth

import (
	"testing"

	"github.com/xdg-go/scram"

	"pfrouter/config"
)

// scramLogin runs a whole SCRAM-SHA-256 exchange with a real client.
func scramLogin(t *testing.T, p *Policy, user, pw string, tls bool) (Decision, error) {
	t.Helper()
	conv, err := p.SCRAM(ctx, IMAP, tls, client)
	if err != nil {
		return Decision{}, err
	}
	cl, err := scram.SHA256.NewClient(user, pw, "")
	if err != nil {
		t.Fatal(err)
	}
	cc := cl.NewConversation()
	c1, _ := cc.Step("")
	s1, err := conv.Step(ctx, c1)
	if err != nil {
		return Decision{}, err
	}
	c2, err := cc.Step(s1)
	if err != nil {
		t.Fatalf("client step 2: %v", err)
	}
	s2, err := conv.Step(ctx, c2)
	if err != nil {
		return Decision{}, err
	}
	if !conv.Done() {
		t.Fatal("conversation not done")
	}
	// The client checks the server signature: the server knew the key.
	if _, err := cc.Step(s2); err != nil || !cc.Valid() {
		t.Fatalf("server signature rejected: %v", err)
	}
	dec, ok := conv.Decision()
	if !ok {
		t.Fatal("no decision after success")
	}
	return dec, nil
}

func TestSCRAM(t *testing.T) {
	p, _ := newPolicy(t, newDir(t, "", hashedUser(t)), config.LoginPlainTextAuth, config.CrossSiteRefuse)
	// A2: PlainTextAuthentication allows SCRAM before TLS.
	dec, err := scramLogin(t, p, "alice", "alice-pw", false)
	if err != nil || !dec.Local || dec.User.Name != "alice" || dec.Mechanism != MechSCRAM256 {
		t.Fatalf("alice: %+v %v", dec, err)
	}
	if _, err := scramLogin(t, p, "alice", "wrong", false); kindOf(err) != AuthFailed {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := scramLogin(t, p, "nobody", "x", false); kindOf(err) != AuthFailed {
		t.Errorf("unknown user: %v", err)
	}
	// The account rules apply after the proof (A3, A5).
	if _, err := scramLogin(t, p, "carol", "carol-pw", false); kindOf(err) != Disabled {
		t.Errorf("carol: %v", err)
	}
	if _, err := scramLogin(t, p, "bob", "bob-pw", false); kindOf(err) != CrossSite {
		t.Errorf("bob cross-site: %v", err)
	}
	// A bcrypt user has no SCRAM key until a password login over TLS.
	if _, err := scramLogin(t, p, "hashed", "hash-pw", false); kindOf(err) != AuthFailed {
		t.Errorf("hashed before learning: %v", err)
	}
	if _, err := login(p, IMAP, MechLogin, "hashed", "hash-pw", true); err != nil {
		t.Fatal(err)
	}
	if _, err := scramLogin(t, p, "hashed", "hash-pw", false); err != nil {
		t.Errorf("hashed after a password login: %v", err)
	}
	// A changed password invalidates the derived key.
	p.SetDirectory(newDir(t, "", "", "password: alice-pw}", "password: alice-new}"))
	if _, err := scramLogin(t, p, "alice", "alice-pw", false); kindOf(err) != AuthFailed {
		t.Errorf("old password after change: %v", err)
	}
	if _, err := scramLogin(t, p, "alice", "alice-new", false); err != nil {
		t.Errorf("new password: %v", err)
	}
	// Garbage is a protocol failure, not a panic.
	conv, err := p.SCRAM(ctx, IMAP, false, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Step(ctx, "garbage"); kindOf(err) != AuthFailed {
		t.Errorf("garbage client-first: %v", err)
	}
}

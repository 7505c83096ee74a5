package imapfront

import (
	"encoding/base64"
	"strings"
	"testing"

	"pfrouter/config"
)

func single(t *testing.T, loginType string) *frontend {
	return startFrontend(t, feOpts{name: "ex1", loginType: loginType, dir: newDir(t, "", "127.0.0.1:2", "127.0.0.1:3")})
}

// A1, A2: greeting and capabilities before and after STARTTLS.
func TestA2GreetingAndCapability(t *testing.T) {
	fe := single(t, config.LoginSecure)
	c := dial(t, fe.addr)
	g := c.expect("* OK [CAPABILITY ")
	for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "STARTTLS", "LOGINDISABLED", "SASL-IR", "pfrouter ex1 ready"} {
		if !strings.Contains(g, want) {
			t.Errorf("greeting %q lacks %s", g, want)
		}
	}
	if strings.Contains(g, "AUTH=") {
		t.Errorf("SecureLogin without TLS must not offer AUTH=: %q", g)
	}
	un, ok := c.cmd("a1", "CAPABILITY")
	if len(un) != 1 || !strings.Contains(un[0], "LOGINDISABLED") || !strings.HasPrefix(ok, "a1 OK") {
		t.Fatalf("CAPABILITY: %q %q", un, ok)
	}
	c.startTLS(fe.client)
	un, _ = c.cmd("a2", "CAPABILITY")
	caps := un[0]
	if strings.Contains(caps, "LOGINDISABLED") || strings.Contains(caps, "STARTTLS") ||
		!strings.Contains(caps, "AUTH=PLAIN") || !strings.Contains(caps, "AUTH=SCRAM-SHA-256") {
		t.Errorf("after STARTTLS: %q", caps)
	}
	if _, ok := c.cmd("a3", "STARTTLS"); !strings.HasPrefix(ok, "a3 BAD") {
		t.Errorf("second STARTTLS: %q", ok)
	}
	if _, ok := c.cmd("a4", "NOOP"); !strings.HasPrefix(ok, "a4 OK") {
		t.Errorf("NOOP: %q", ok)
	}
	if un, ok := c.cmd("a5", `ID ("name" "test")`); len(un) != 1 || !strings.HasPrefix(un[0], "* ID") || !strings.HasPrefix(ok, "a5 OK") {
		t.Errorf("ID: %q %q", un, ok)
	}
	un, ok = c.cmd("a6", "LOGOUT")
	if len(un) != 1 || !strings.HasPrefix(un[0], "* BYE") || !strings.HasPrefix(ok, "a6 OK") {
		t.Errorf("LOGOUT: %q %q", un, ok)
	}
	c.expectClosed()
}

// A2: SecureLogin refuses LOGIN and AUTHENTICATE PLAIN before TLS.
func TestA2SecureLoginNeedsTLS(t *testing.T) {
	fe := single(t, config.LoginSecure)
	c := dial(t, fe.addr)
	c.line()
	if _, ok := c.cmd("a1", "LOGIN alice alice-pw"); !strings.HasPrefix(ok, "a1 NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN without TLS: %q", ok)
	}
	// Refused before the client is asked for its password (no "+").
	if _, ok := c.cmd("a2", "AUTHENTICATE PLAIN"); !strings.HasPrefix(ok, "a2 NO [PRIVACYREQUIRED]") {
		t.Fatalf("AUTHENTICATE PLAIN without TLS: %q", ok)
	}
	if !strings.Contains(fe.logs.String(), "kind=privacy_required") {
		t.Errorf("refusal not logged:\n%s", fe.logs)
	}
}

// A2 + handover: STARTTLS, LOGIN, then the local IMAP server serves the
// session, including bytes the client pipelined after LOGIN.
func TestSTARTTLSLoginHandover(t *testing.T) {
	fe := single(t, config.LoginSecure)
	c := dial(t, fe.addr)
	c.line()
	c.startTLS(fe.client)
	c.send("a1 LOGIN alice alice-pw\r\na2 NOOP") // pipelined
	c.expect("a1 OK [CAPABILITY IMAP4rev1 IMAP4rev2] Logged in")
	waitUser(t, fe.local, "alice")
	c.expect("a2 OK ex1 alice got NOOP")
	if _, ok := c.cmd("a3", "SELECT INBOX"); ok != "a3 OK ex1 alice got SELECT" {
		t.Fatalf("after handover: %q", ok)
	}
}

// A2: PlainTextLogin allows LOGIN without TLS.
func TestA2PlainTextLoginWithoutTLS(t *testing.T) {
	fe := single(t, config.LoginPlainText)
	c := dial(t, fe.addr)
	if g := c.line(); strings.Contains(g, "LOGINDISABLED") || !strings.Contains(g, "AUTH=PLAIN") {
		t.Errorf("greeting: %q", g)
	}
	if _, ok := c.cmd("a1", `LOGIN "alice" "alice-pw"`); !strings.HasPrefix(ok, "a1 OK") {
		t.Fatalf("LOGIN: %q", ok)
	}
	waitUser(t, fe.local, "alice")
}

// LOGIN with synchronizing and non-synchronizing literals.
func TestLiteralLogin(t *testing.T) {
	fe := single(t, config.LoginPlainText)
	c := dial(t, fe.addr)
	c.line()
	c.send("a1 LOGIN {5}")
	c.expect("+ ")
	c.send("alice {8}")
	c.expect("+ ")
	c.send("wrong-pw")
	c.expect("a1 NO [AUTHENTICATIONFAILED]")
	c.send("a2 LOGIN {5+}\r\nalice {8+}\r\nalice-pw")
	c.expect("a2 OK")
	waitUser(t, fe.local, "alice")
}

func TestAuthenticatePlain(t *testing.T) {
	fe := single(t, config.LoginSecure)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := dialTLS(t, fe.tlsAdr, fe.client) // implicit TLS (993)
	if g := c.line(); strings.Contains(g, "STARTTLS") || !strings.Contains(g, "AUTH=PLAIN") {
		t.Errorf("implicit TLS greeting: %q", g)
	}
	if _, ok := c.cmd("a1", "AUTHENTICATE PLAIN "+b64("\x00alice\x00nope")); !strings.HasPrefix(ok, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", ok)
	}
	c.send("a2 AUTHENTICATE PLAIN")
	c.expect("+ ")
	c.send("*")
	c.expect("a2 BAD")
	c.send("a3 AUTHENTICATE PLAIN")
	c.expect("+ ")
	c.send("not base64!")
	c.expect("a3 BAD")
	c.send("a4 AUTHENTICATE PLAIN")
	c.expect("+ ")
	c.send(b64("alice\x00alice\x00alice-pw"))
	c.expect("a4 OK [CAPABILITY")
	waitUser(t, fe.local, "alice")
	// A3 through AUTHENTICATE with SASL-IR.
	c = dialTLS(t, fe.tlsAdr, fe.client)
	c.line()
	if _, ok := c.cmd("b1", "AUTHENTICATE PLAIN "+b64("\x00carol\x00carol-pw")); !strings.HasPrefix(ok, "b1 NO [CONTACTADMIN]") {
		t.Fatalf("carol (imap_enabled: false): %q", ok)
	}
}

// Commands that need a login, unknown commands and garbage get BAD; too
// many end the session.
func TestPreAuthCommandsRefused(t *testing.T) {
	fe := single(t, config.LoginPlainText)
	c := dial(t, fe.addr)
	c.line()
	for i, cmd := range []string{"SELECT INBOX", "FETCH 1 BODY[]", "FROB", `LOGIN "unterminated`, "LOGIN onlyone"} {
		tag := "t" + string(rune('a'+i))
		if _, ok := c.cmd(tag, cmd); !strings.HasPrefix(ok, tag+" BAD") {
			t.Errorf("%s: %q", cmd, ok)
		}
	}
	c.send("")
	c.expect("* BAD")
	c.send("+bad NOOP")
	c.expect("* BAD")
	c.send("a AUTHENTICATE CRAM-MD5")
	c.expect("a NO")
	for i := 0; i < 3; i++ {
		c.send("x FROB")
	}
	c.expect("x BAD")
	c.expect("x BAD")
	c.expect("x BAD")
	c.expect("* BYE")
	c.expectClosed()
}

// Plaintext pipelined after STARTTLS must not be taken as TLS-protected.
func TestSTARTTLSInjectionDropped(t *testing.T) {
	fe := single(t, config.LoginSecure)
	c := dial(t, fe.addr)
	c.line()
	c.send("a STARTTLS\r\nb LOGIN alice alice-pw")
	c.expect("a OK")
	c.expectClosed()
	select {
	case u := <-fe.local.users:
		t.Fatalf("injected login handed over %q", u)
	default:
	}
}

// Three failed logins end the connection.
func TestFailedLoginsDisconnect(t *testing.T) {
	fe := single(t, config.LoginPlainText)
	c := dial(t, fe.addr)
	c.line()
	c.send("a LOGIN alice x")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	c.send("b LOGIN alice y")
	c.expect("b NO [AUTHENTICATIONFAILED]")
	c.send("c LOGIN alice z")
	c.expect("c NO [AUTHENTICATIONFAILED]")
	c.expect("* BYE")
	c.expectClosed()
}

// Close ends sessions, handed-over ones too, and Serve returns.
func TestClose(t *testing.T) {
	fe := single(t, config.LoginPlainText)
	c := dial(t, fe.addr)
	c.line()
	c.cmd("a", "LOGIN alice alice-pw")
	waitUser(t, fe.local, "alice")
	idle := dial(t, fe.addr)
	idle.line()
	fe.srv.Close()
	c.expectClosed()
	idle.expectClosed()
}

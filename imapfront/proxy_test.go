package imapfront

import (
	"context"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/internal/trusttest"
)

// A5: a user whose mailbox is on another server of the same site is
// proxied: the front end logs in to the backend as itself acting for the
// user, and bytes flow both ways between the client and the backend's
// local IMAP server.
func TestA5ProxyToMailboxServer(t *testing.T) {
	backendL := listen(t) // listen first: the directory needs the real port
	dir := newDir(t, "cross_site: refuse", backendL.Addr().String(), "127.0.0.1:3")
	front := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir})
	back := startFrontend(t, feOpts{name: "ex2", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir, listener: backendL})

	c := dial(t, front.addr)
	c.line()
	c.startTLS(front.client)
	_, ok := c.cmd("a1", "LOGIN dan dan-pw")
	if !strings.HasPrefix(ok, "a1 OK [CAPABILITY IMAP4rev1 IMAP4rev2] Logged in (proxied to ex2)") {
		t.Fatalf("proxied login: %q", ok)
	}
	waitUser(t, back.local, "dan")
	select {
	case u := <-front.local.users:
		t.Fatalf("front end served %q locally", u)
	default:
	}
	for _, cmd := range []string{"SELECT INBOX", "IDLE"} {
		tag := "p" + cmd[:1]
		if _, ok := c.cmd(tag, cmd); ok != tag+" OK ex2 dan got "+strings.Fields(cmd)[0] {
			t.Fatalf("relayed %s: %q", cmd, ok)
		}
	}
	// The backend saw a server login on dan's behalf.
	if !strings.Contains(back.logs.String(), "via=ex1") {
		t.Errorf("backend log lacks the server login:\n%s", back.logs)
	}
	un, ok := c.cmd("z", "LOGOUT")
	if len(un) != 1 || ok != "z OK LOGOUT completed" {
		t.Fatalf("LOGOUT: %q %q", un, ok)
	}
	c.expectClosed()
}

// A5: cross_site refuse: the login fails and event 1008 is logged with the
// user, the mailbox site and the front-end server.
func TestA5CrossSiteRefused(t *testing.T) {
	dir := newDir(t, "cross_site: refuse", "127.0.0.1:2", "127.0.0.1:3")
	fe := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir})
	c := dial(t, fe.addr)
	c.line()
	c.startTLS(fe.client)
	if _, ok := c.cmd("a1", "LOGIN bob bob-pw"); !strings.HasPrefix(ok, "a1 NO [CONTACTADMIN]") {
		t.Fatalf("cross-site login: %q", ok)
	}
	var line string
	for _, l := range strings.Split(fe.logs.String(), "\n") {
		if strings.Contains(l, "event_id=1008") {
			line = l
		}
	}
	for _, want := range []string{"user=bob", "mailbox_site=berlin", "frontend=ex1"} {
		if !strings.Contains(line, want) {
			t.Errorf("1008 line %q lacks %s", line, want)
		}
	}
}

// An unreachable mailbox server is a temporary failure, not a hang.
func TestA5BackendDown(t *testing.T) {
	dead := listen(t)
	addr := dead.Addr().String()
	dead.Close()
	fe := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginPlainText, dir: newDir(t, "", addr, "127.0.0.1:3")})
	c := dial(t, fe.addr)
	c.line()
	if _, ok := c.cmd("a", "LOGIN dan dan-pw"); !strings.HasPrefix(ok, "a NO [UNAVAILABLE]") {
		t.Fatalf("backend down: %q", ok)
	}
}

// S5/A5: DialAuthenticated logs in with the organization certificate only
// where the peer is a verified server of the organization and the caller
// is a server in the directory; it positions the connection after the
// tagged OK on success.
func TestDialAuthenticated(t *testing.T) {
	backendL := listen(t)
	dir := newDir(t, "", backendL.Addr().String(), "127.0.0.1:3")
	back := startFrontend(t, feOpts{name: "ex2", loginType: config.LoginSecure, dir: dir, listener: backendL})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A server of the organization that is not in the directory.
	_, err := DialAuthenticated(ctx, back.addr, trusttest.Identity(t, trusttest.Secret, "ex9").ClientTLS("ex2"), "dan")
	if be, ok := err.(*BackendError); !ok || !strings.Contains(be.Line, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("server not in the directory: %v", err)
	}
	// Another organization's certificate: the handshake fails.
	if _, err := DialAuthenticated(ctx, back.addr, trusttest.Identity(t, trusttest.OtherSecret, "ex1").ClientTLS("ex2"), "dan"); err == nil {
		t.Fatal("a foreign organization's server logged in")
	}
	// Dialing ex2's address but expecting ex3: the peer's certificate names ex2.
	if _, err := DialAuthenticated(ctx, back.addr, trusttest.Identity(t, trusttest.Secret, "ex1").ClientTLS("ex3"), "dan"); err == nil {
		t.Fatal("the front end accepted a mailbox server certificate for another server")
	}
	if _, err := DialAuthenticated(ctx, back.addr, nil, "dan"); err == nil {
		t.Fatal("nil TLS config must be refused")
	}
	conn, err := DialAuthenticated(ctx, back.addr, trusttest.Identity(t, trusttest.Secret, "ex1").ClientTLS("ex2"), "dan")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if caps := conn.(*BackendConn).Capabilities(); len(caps) == 0 {
		t.Error("no capabilities from the login OK")
	}
	waitUser(t, back.local, "dan")
	conn.Write([]byte("x NOOP\r\n"))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if got := string(buf[:n]); got != "x OK ex2 dan got NOOP\r\n" {
		t.Fatalf("after login: %q", got)
	}
}

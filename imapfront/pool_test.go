package imapfront

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
)

// warmIdle returns the warm connections ready for addr.
func warmIdle(fe *frontend, addr string) []*tls.Conn {
	p := fe.srv.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*tls.Conn
	for _, w := range p.idle[target{"ex2", addr}] {
		out = append(out, w.tc)
	}
	return out
}

func waitWarm(t *testing.T, fe *frontend, addr string, n int) []*tls.Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if w := warmIdle(fe, addr); len(w) >= n {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool for %s did not reach %d warm connections", addr, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func proxiedLogin(t *testing.T, fe *frontend, user string) *client {
	t.Helper()
	c := dial(t, fe.addr)
	c.line()
	c.startTLS(fe.client)
	if _, ok := c.cmd("a1", "LOGIN "+user+" "+user+"-pw"); !strings.HasPrefix(ok, "a1 OK [CAPABILITY IMAP4rev1 IMAP4rev2] Logged in (proxied to ex2)") {
		t.Fatalf("proxied login: %q", ok)
	}
	return c
}

// A5: after a first proxied login the front end keeps connections to the
// mailbox server past STARTTLS; the next login uses one of them (one round
// trip), and the session works as a freshly dialed one.
func TestA5ProxiedLoginUsesWarmConnection(t *testing.T) {
	backendL := listen(t)
	addr := backendL.Addr().String()
	dir := newDir(t, "cross_site: refuse", addr, "127.0.0.1:3")
	front := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir})
	back := startFrontend(t, feOpts{name: "ex2", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir, listener: backendL})

	proxiedLogin(t, front, "dan")
	waitUser(t, back.local, "dan")
	warm := waitWarm(t, front, addr, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bc, err := front.srv.dialBackend(ctx, "ex2", addr, "dan")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	if bc.Conn != warm[0] {
		t.Fatal("login did not use the oldest warm connection")
	}
	waitUser(t, back.local, "dan")
	// A refusal on a warm connection is final, not retried on a new one.
	if _, err := front.srv.dialBackend(ctx, "ex2", addr, "nobody"); err == nil {
		t.Fatal("login for an unknown user accepted")
	} else if _, ok := err.(*BackendError); !ok {
		t.Fatalf("unknown user: %v, want a BackendError", err)
	}
	c := proxiedLogin(t, front, "dan")
	if _, ok := c.cmd("s", "SELECT INBOX"); ok != "s OK ex2 dan got SELECT" {
		t.Fatalf("relayed SELECT: %q", ok)
	}
}

// A5: warm connections the mailbox server dropped, or too old to trust,
// do not fail a login: it dials a fresh connection.
func TestA5StaleWarmConnectionFallsBackToDial(t *testing.T) {
	backendL := listen(t)
	addr := backendL.Addr().String()
	dir := newDir(t, "cross_site: refuse", addr, "127.0.0.1:3")
	front := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir})
	back := startFrontend(t, feOpts{name: "ex2", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir, listener: backendL})

	proxiedLogin(t, front, "dan")
	waitUser(t, back.local, "dan")
	for _, tc := range waitWarm(t, front, addr, 2) {
		tc.NetConn().Close() // as if the server had dropped it
	}
	proxiedLogin(t, front, "dan")
	waitUser(t, back.local, "dan")

	waitWarm(t, front, addr, 2)
	p := front.srv.pool
	p.mu.Lock()
	old := p.idle[target{"ex2", addr}]
	for i := range old {
		old[i].born = time.Now().Add(-2 * warmMaxAge)
	}
	p.mu.Unlock()
	proxiedLogin(t, front, "dan")
	waitUser(t, back.local, "dan")
	for _, w := range old {
		if _, err := w.tc.Write([]byte("x")); err == nil {
			t.Fatal("an expired warm connection was kept open")
		}
	}
}

// Close ends warm connections and their fills.
func TestWarmPoolClosedWithServer(t *testing.T) {
	backendL := listen(t)
	addr := backendL.Addr().String()
	dir := newDir(t, "cross_site: refuse", addr, "127.0.0.1:3")
	front := startFrontend(t, feOpts{name: "ex1", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir})
	startFrontend(t, feOpts{name: "ex2", loginType: config.LoginSecure, crossSite: config.CrossSiteRefuse, dir: dir, listener: backendL})
	proxiedLogin(t, front, "dan")
	warm := waitWarm(t, front, addr, 2)
	front.srv.Close()
	for _, tc := range warm {
		if _, err := tc.Write([]byte("x")); err == nil {
			t.Fatal("a warm connection survived Close")
		}
	}
	if front.srv.pool.take(target{"ex2", addr}) != nil {
		t.Fatal("take after Close returned a connection")
	}
}

package pop3d

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// SPEC A1: STLS on the plain port, then login over TLS.
func TestSTLSThenLogin_A1(t *testing.T) {
	srvCfg, cliCfg, _ := selfSigned(t)
	auth := &fakeAuth{md: newMaildrop(msg1)}
	_, addr := startServer(t, Options{Auth: auth, TLSConfig: srvCfg, PlaintextAllowed: func(tls bool) bool { return tls }})
	cl := dial(t, addr)
	if caps := cl.multi("CAPA"); !slices.Contains(caps, "STLS") {
		t.Fatalf("CAPA %q lacks STLS", caps)
	}
	cl.expect("STLS", "+OK")
	tc := tls.Client(cl.c, cliCfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.c, cl.r = tc, bufio.NewReader(tc)
	caps := cl.multi("CAPA")
	if slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") {
		t.Errorf("CAPA after STLS = %q; want USER and no STLS", caps)
	}
	cl.expect("STLS", "-ERR")
	cl.login()
	cl.expect("STAT", "+OK 1 ")
	if r := auth.requests(); len(r) != 1 || !r[0].TLS {
		t.Errorf("AuthRequest.TLS not set after STLS: %+v", r)
	}
}

// Plaintext pipelined after STLS must not be executed under TLS.
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	srvCfg, cliCfg, _ := selfSigned(t)
	auth := &fakeAuth{md: newMaildrop(msg1)}
	_, addr := startServer(t, Options{Auth: auth, TLSConfig: srvCfg})
	cl := dial(t, addr)
	cl.send("STLS\r\nUSER alice\r\nPASS secret pw")
	if got := cl.line(); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("STLS answer %q", got)
	}
	tc := tls.Client(cl.c, cliCfg)
	if err := tc.Handshake(); err != nil {
		// The injected bytes may also break the handshake: also safe.
		t.Logf("handshake failed (acceptable): %v", err)
		return
	}
	cl.c, cl.r = tc, bufio.NewReader(tc)
	cl.expect("STAT", "-ERR") // not logged in
	if r := auth.requests(); len(r) != 0 {
		t.Errorf("injected plaintext reached the Authenticator: %+v", r)
	}
}

func TestSTLSNotConfigured(t *testing.T) {
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop()}})
	cl := dial(t, addr)
	cl.expect("STLS", "-ERR")
}

// SPEC A1: implicit TLS is Serve on a TLS listener.
func TestImplicitTLS_A1(t *testing.T) {
	srvCfg, cliCfg, _ := selfSigned(t)
	auth := &fakeAuth{md: newMaildrop(msg1)}
	srv, err := New(Options{Hostname: "pop.test", Auth: auth, TLSConfig: srvCfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	if caps := cl.multi("CAPA"); slices.Contains(caps, "STLS") {
		t.Errorf("CAPA on implicit TLS advertises STLS: %q", caps)
	}
	cl.login()
	if r := auth.requests(); len(r) != 1 || !r[0].TLS {
		t.Errorf("AuthRequest.TLS not set on implicit TLS: %+v", r)
	}
	var _ net.Conn = c
}

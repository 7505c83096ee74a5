package pop3d

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"pfrouter/internal/trusttest"
	"strings"
	"testing"
	"time"
)

// fakeBackend accepts one connection on 127.0.0.1 and answers each line
// with "+OK echo <line>"; on EOF it writes "+OK bye" and closes, so the
// test sees that half-close reached it.
func fakeBackend(t *testing.T) (addr string, lines chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	lines = make(chan string, 100)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				io.WriteString(c, "+OK bye\r\n")
				close(lines)
				return
			}
			s = strings.TrimRight(s, "\r\n")
			lines <- s
			io.WriteString(c, "+OK echo "+s+"\r\n")
		}
	}()
	return l.Addr().String(), lines
}

// SPEC A5: after login the front end answers +OK and pipes bytes.
func TestProxyPipesBytes_A5(t *testing.T) {
	baddr, lines := fakeBackend(t)
	auth := &fakeAuth{proxy: func() (net.Conn, error) { return net.Dial("tcp", baddr) }}
	_, addr := startServer(t, Options{Auth: auth})
	cl := dial(t, addr)
	// PIPELINING: STAT arrives in the same packet as PASS and must reach
	// the backend, not be lost in the front end's buffer.
	cl.send("USER alice\r\nPASS secret pw\r\nSTAT")
	cl.line()
	if got := cl.line(); !strings.HasPrefix(got, "+OK logged in") {
		t.Fatalf("login answer %q", got)
	}
	if got := cl.line(); got != "+OK echo STAT" {
		t.Fatalf("pipelined STAT answer %q", got)
	}
	cl.expect("RETR 1", "+OK echo RETR 1")
	// Half-close: the backend sees EOF and its last words still arrive.
	if err := cl.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := cl.line(); got != "+OK bye" {
		t.Errorf("after half-close got %q, want the backend's +OK bye", got)
	}
	cl.expectClosed()
	var got []string
	for l := range lines {
		got = append(got, l)
	}
	if strings.Join(got, "|") != "STAT|RETR 1" {
		t.Errorf("backend saw %q", got)
	}
}

// SPEC A5 end to end: the front end proxies to a real pop3d backend through
// DialAuthenticated over STLS with AUTH EXTERNAL; deletion happens on the
// backend at QUIT.
func TestProxyToPop3dBackend_A5(t *testing.T) {
	srvCfg, _, _ := selfSigned(t)
	bmd := newMaildrop(msg1, msg2)
	back := trusttest.Identity(t, trusttest.Secret, "ex2")
	_, baddr := startServer(t, Options{Hostname: "backend", Auth: &fakeAuth{md: bmd, authzOK: "alice", peer: "ex1"}, TLSConfig: back.WrapServerTLS(srvCfg)})
	front := trusttest.Identity(t, trusttest.Secret, "ex1")
	auth := &fakeAuth{proxy: func() (net.Conn, error) {
		return DialAuthenticated(context.Background(), baddr, front.ClientTLS("ex2"), "alice")
	}}
	_, addr := startServer(t, Options{Auth: auth})
	cl := dial(t, addr)
	cl.login()
	cl.expect("STAT", "+OK 2 ")
	cl.expect("DELE 2", "+OK")
	cl.expect("QUIT", "+OK backend POP3 server signing off")
	cl.expectClosed()
	bmd.waitClosed(t)
	if d := bmd.deleteCalls(); len(d) != 1 || d[0][0] != "uid-2" {
		t.Errorf("backend Delete calls %v", d)
	}
}

func TestProxyDialFailureIsSysTemp(t *testing.T) {
	auth := &fakeAuth{proxy: func() (net.Conn, error) { return nil, errors.New("backend down") }}
	_, addr := startServer(t, Options{Auth: auth})
	cl := dial(t, addr)
	cl.expect("USER alice", "+OK")
	cl.expect("PASS secret pw", "-ERR [SYS/TEMP]")
}

// S5/A5: a proxied login is AUTH EXTERNAL over STLS with the organization
// certificate; nothing travels in clear and the peer must prove its name.
func TestDialAuthenticated(t *testing.T) {
	srvCfg, _, _ := selfSigned(t)
	md := newMaildrop(msg1)
	auth := &fakeAuth{md: md, authzOK: "bob", peer: "ex1"}
	back := trusttest.Identity(t, trusttest.Secret, "ex2")
	_, addr := startServer(t, Options{Auth: auth, TLSConfig: back.WrapServerTLS(srvCfg)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex1 := trusttest.Identity(t, trusttest.Secret, "ex1")

	t.Run("STLS and EXTERNAL", func(t *testing.T) {
		c, err := DialAuthenticated(ctx, addr, ex1.ClientTLS("ex2"), "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl := &client{t: t, c: c, r: bufio.NewReader(c)}
		cl.expect("STAT", "+OK 1 ")
		r := auth.requests()
		if last := r[len(r)-1]; last.Mechanism != "EXTERNAL" || last.AuthzID != "bob" || !last.TLS || last.Password != "" {
			t.Errorf("request %+v", last)
		}
	})
	t.Run("no TLS config", func(t *testing.T) {
		if _, err := DialAuthenticated(ctx, addr, nil, "bob"); err == nil {
			t.Error("DialAuthenticated without TLS succeeded")
		}
	})
	t.Run("server not the one expected", func(t *testing.T) {
		if _, err := DialAuthenticated(ctx, addr, ex1.ClientTLS("ex3"), "bob"); err == nil {
			t.Error("accepted ex2's certificate when dialing ex3")
		}
	})
	t.Run("user-facing certificate only", func(t *testing.T) {
		// A server that answers with its user certificate (as a fake
		// would) is not trusted.
		_, userOnly := startServer(t, Options{Auth: auth, TLSConfig: srvCfg})
		if _, err := DialAuthenticated(ctx, userOnly, ex1.ClientTLS("ex2"), "bob"); err == nil {
			t.Error("accepted a non-organization certificate")
		}
	})
	t.Run("another server's proof", func(t *testing.T) {
		_, err := DialAuthenticated(ctx, addr, trusttest.Identity(t, trusttest.Secret, "ex3").ClientTLS("ex2"), "bob")
		if err == nil || !strings.Contains(err.Error(), "[AUTH]") {
			t.Errorf("err = %v, want the server's [AUTH] refusal", err)
		}
	})
	t.Run("EXTERNAL without TLS", func(t *testing.T) {
		c := dial(t, addr)
		c.expect("AUTH EXTERNAL Ym9i", "-ERR [AUTH]")
	})
	t.Run("no STLS offered", func(t *testing.T) {
		_, plainAddr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop()}})
		_, err := DialAuthenticated(ctx, plainAddr, ex1.ClientTLS("ex2"), "bob")
		if err == nil || !strings.Contains(err.Error(), "STLS") {
			t.Errorf("err = %v, want refusal to log in without TLS", err)
		}
	})
}

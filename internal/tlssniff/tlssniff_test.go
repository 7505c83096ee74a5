package tlssniff

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"pfrouter/tlsutil"
)

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := tlsutil.Load("", "", t.TempDir(), []string{"sniff.test"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// echo serves each accepted connection: one line back, prefixed with
// whether it came as TLS.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, isTLS := c.(*tls.Conn)
			line, _ := bufio.NewReader(c).ReadString('\n')
			if isTLS {
				io.WriteString(c, "tls "+line)
			} else {
				io.WriteString(c, "plain "+line)
			}
		}()
	}
}

// One port, two kinds of clients: a TLS client gets a *tls.Conn (the
// handshake byte replayed to it), a plain one its bytes unchanged; a
// client that says nothing holds neither up and is closed after FirstByte.
func TestSniffTLSAndPlain(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, selfSigned(t), Options{FirstByte: 300 * time.Millisecond, MaxPending: 2})
	defer l.Close()
	go echo(l)
	addr := l.Addr().String()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	ask := func(c net.Conn, msg string) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, msg+"\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		return strings.TrimSpace(got)
	}
	pc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := ask(pc, "GET / HTTP/1.1"); got != "plain GET / HTTP/1.1" {
		t.Errorf("plain client: %q", got)
	}
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // a test of the sniffing, not of trust
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if got := ask(tc, "hello"); got != "tls hello" {
		t.Errorf("TLS client: %q", got)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Error("a silent client was not closed")
	}
	l.Close()
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close")
	}
}

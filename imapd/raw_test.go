package imapd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// rawConn speaks IMAP as protocol lines over a real socket, for the
// cases a client library will not produce (bad syntax, cut-off literals).
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw() *rawConn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	r := &rawConn{t: e.t, c: c, br: bufio.NewReader(c)}
	r.line() // greeting
	return r
}

// rawLogin opens a raw connection logged in as user.
func (e *env) rawLogin(user string) *rawConn {
	r := e.raw()
	r.cmd("L1 LOGIN " + user + " " + user + "-pw")
	return r
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// line reads one response line without CRLF; "" at EOF.
func (r *rawConn) line() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil && l == "" {
		return ""
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends "tag ..." and returns every line up to and including the
// tagged reply, failing the test if the connection ends first.
func (r *rawConn) cmd(s string) []string {
	r.t.Helper()
	r.send(s + "\r\n")
	return r.until(strings.Fields(s)[0])
}

func (r *rawConn) until(tag string) []string {
	r.t.Helper()
	var out []string
	for {
		l := r.line()
		if l == "" {
			r.t.Fatalf("connection ended before the reply to %s; got %q", tag, out)
		}
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// tagged is the last line of a reply.
func tagged(lines []string) string { return lines[len(lines)-1] }

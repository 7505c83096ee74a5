package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// dialTimeout bounds the whole login exchange when ctx has no deadline.
const dialTimeout = 30 * time.Second

// DialAuthenticated connects to the POP3 server at addr, upgrades with STLS
// (tlsCfg is required, normally servercred's ClientTLS: its client
// certificate is the credential and the server's certificate is verified)
// and logs in with AUTH EXTERNAL acting for authzid, for the front end's
// proxy (SPEC A5). A server that does not offer STLS is refused: nothing
// goes in clear. The returned conn is positioned right after the "+OK" of
// the login; bytes the server sent after it are not lost. ctx bounds the
// dial and the login only.
func DialAuthenticated(ctx context.Context, addr string, tlsCfg *tls.Config, authzid string) (net.Conn, error) {
	if tlsCfg == nil {
		return nil, errors.New("pop3d: DialAuthenticated needs a TLS config (STLS is mandatory)")
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3d: dial backend %s: %w", addr, err)
	}
	conn, err := login(ctx, raw, addr, tlsCfg, authzid)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("pop3d: login to backend %s for %q: %w", addr, authzid, err)
	}
	return conn, nil
}

func login(ctx context.Context, raw net.Conn, addr string, tlsCfg *tls.Config, authzid string) (net.Conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(dialTimeout)
	}
	_ = raw.SetDeadline(deadline)
	// Closing the conn unblocks reads when ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()

	var c net.Conn = raw
	r := bufio.NewReader(c)
	if _, err := expectOK(r, "greeting"); err != nil {
		return nil, err
	}
	{
		if err := send(c, "CAPA"); err != nil {
			return nil, err
		}
		caps, err := readMulti(r, "CAPA")
		if err != nil {
			return nil, err
		}
		if !hasCap(caps, "STLS") {
			return nil, errors.New("server does not advertise STLS; refusing to send credentials in clear")
		}
		if err := send(c, "STLS"); err != nil {
			return nil, err
		}
		if _, err := expectOK(r, "STLS"); err != nil {
			return nil, err
		}
		if r.Buffered() > 0 {
			return nil, errors.New("server sent data after STLS +OK before TLS; refusing")
		}
		cfg := tlsCfg
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg.ServerName = host
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("STLS handshake: %w", err)
		}
		c = tc
		r = bufio.NewReader(c)
	}
	if line := xclientLine(ctx); line != "" {
		if err := send(c, line); err != nil {
			return nil, err
		}
		if _, err := expectOK(r, "XCLIENT"); err != nil {
			return nil, err
		}
	}
	ir := base64.StdEncoding.EncodeToString([]byte(authzid))
	if ir == "" {
		ir = "=" // RFC 5034 §4: an empty initial response
	}
	if err := send(c, "AUTH EXTERNAL "+ir); err != nil {
		return nil, err
	}
	for {
		line, err := readLine(r, maxSASLLine)
		if err != nil {
			return nil, fmt.Errorf("reading AUTH reply: %w", err)
		}
		s := string(line)
		switch {
		case strings.HasPrefix(s, "+OK"):
			_ = c.SetDeadline(time.Time{})
			return &bufferedConn{Conn: c, r: r}, nil
		case s == "+" || strings.HasPrefix(s, "+ "):
			// A server that ignored the initial response asks again.
			if err := send(c, ir); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("AUTH EXTERNAL refused: %q", s)
		}
	}
}

func send(c net.Conn, line string) error {
	if _, err := c.Write([]byte(line + "\r\n")); err != nil {
		return fmt.Errorf("sending %s: %w", strings.Fields(line)[0], err)
	}
	return nil
}

func expectOK(r *bufio.Reader, what string) (string, error) {
	line, err := readLine(r, maxSASLLine)
	if err != nil {
		return "", fmt.Errorf("reading %s reply: %w", what, err)
	}
	if !strings.HasPrefix(string(line), "+OK") {
		return "", fmt.Errorf("%s refused: %q", what, line)
	}
	return string(line), nil
}

// readMulti reads a multi-line response and returns its lines un-stuffed.
func readMulti(r *bufio.Reader, what string) ([]string, error) {
	if _, err := expectOK(r, what); err != nil {
		return nil, err
	}
	var lines []string
	for len(lines) < 1000 {
		line, err := readLine(r, maxSASLLine)
		if err != nil {
			return nil, fmt.Errorf("reading %s reply: %w", what, err)
		}
		s := string(line)
		if s == "." {
			return lines, nil
		}
		lines = append(lines, strings.TrimPrefix(s, "."))
	}
	return nil, fmt.Errorf("%s reply too long", what)
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		f := strings.Fields(c)
		if len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// bufferedConn is a net.Conn whose reads first drain a bufio.Reader that
// may hold bytes read during the login.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes when the underlying conn can, so the proxy relay
// keeps half-close semantics.
func (b *bufferedConn) CloseWrite() error { return closeWrite(b.Conn) }

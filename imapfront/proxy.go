package imapfront

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"pfrouter/auth"
)

// BackendConn is an IMAP connection logged in to a mailbox server, as
// DialAuthenticated returns it: reads start right after the tagged OK of
// the login, including anything the server sent after it.
type BackendConn struct {
	net.Conn
	r    *bufio.Reader
	caps []string
}

func (c *BackendConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Capabilities are those the server announced in its login OK
// ([CAPABILITY ...]), or nil.
func (c *BackendConn) Capabilities() []string { return c.caps }

// BackendError is a mailbox server's refusal of our login, with its
// response line.
type BackendError struct {
	Addr, Line string
}

func (e *BackendError) Error() string {
	return fmt.Sprintf("imapfront: IMAP server %s refused the login: %s", e.Addr, e.Line)
}

// DialAuthenticated connects to an IMAP server's plain listener, upgrades
// with STARTTLS (tlsCfg is required, normally servercred's ClientTLS: the
// client certificate is the credential and the peer's is verified), and
// logs in with AUTHENTICATE EXTERNAL (SASL-IR) acting for authzid. Nothing
// sent can be replayed: the proof is the TLS handshake itself. The returned
// net.Conn is a *BackendConn positioned after the tagged OK. ctx bounds the
// whole exchange.
func DialAuthenticated(ctx context.Context, addr string, tlsCfg *tls.Config, authzid string) (net.Conn, error) {
	tc, err := dialStartTLS(ctx, addr, tlsCfg)
	if err != nil {
		return nil, err
	}
	conn, err := authenticate(ctx, tc, addr, authzid)
	if err != nil {
		tc.Close()
		return nil, err
	}
	return conn, nil
}

// dialStartTLS connects to an IMAP server's plain listener and upgrades
// with STARTTLS: the connection is then ready for AUTHENTICATE. ctx bounds
// the exchange.
func dialStartTLS(ctx context.Context, addr string, tlsCfg *tls.Config) (*tls.Conn, error) {
	if tlsCfg == nil {
		return nil, errors.New("imapfront: DialAuthenticated needs a TLS config (STARTTLS is mandatory)")
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imapfront: connect to IMAP server %s: %w", addr, err)
	}
	tc, err := startTLS(ctx, raw, addr, tlsCfg)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

func startTLS(ctx context.Context, raw net.Conn, addr string, tlsCfg *tls.Config) (*tls.Conn, error) {
	stop := bound(ctx, raw)
	defer stop()
	br := bufio.NewReader(raw)
	greet, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("imapfront: read greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(greet, "* OK") {
		return nil, &BackendError{Addr: addr, Line: greet}
	}
	if _, err := io.WriteString(raw, "p1 STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("imapfront: STARTTLS to %s: %w", addr, err)
	}
	if line, _, err := tagged(br, "p1"); err != nil {
		return nil, fmt.Errorf("imapfront: STARTTLS to %s: %w", addr, err)
	} else if !okLine(line, "p1") {
		return nil, &BackendError{Addr: addr, Line: line}
	}
	if br.Buffered() > 0 {
		return nil, fmt.Errorf("imapfront: %s sent data after STARTTLS OK before the handshake", addr)
	}
	cfg := tlsCfg.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("imapfront: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// authenticate logs in on a connection past STARTTLS with AUTHENTICATE
// EXTERNAL (SASL-IR) acting for authzid.
func authenticate(ctx context.Context, tc *tls.Conn, addr, authzid string) (*BackendConn, error) {
	stop := bound(ctx, tc)
	defer stop()
	br := bufio.NewReader(tc)
	ir := base64.StdEncoding.EncodeToString([]byte(authzid))
	login := "p2 AUTHENTICATE EXTERNAL " + ir + "\r\n"
	if client, ok := ctx.Value(clientKey{}).(net.Addr); ok {
		// The mailbox server locks out failed logins by this address,
		// not by ours (auth.Request.Client).
		login = idLine("p1", client) + login
	}
	if _, err := io.WriteString(tc, login); err != nil {
		return nil, fmt.Errorf("imapfront: login to %s: %w", addr, err)
	}
	line, caps, err := tagged(br, "p2")
	if err != nil {
		return nil, fmt.Errorf("imapfront: login to %s: %w", addr, err)
	}
	if !okLine(line, "p2") {
		return nil, &BackendError{Addr: addr, Line: line}
	}
	return &BackendConn{Conn: tc, r: br, caps: caps}, nil
}

// bound applies ctx's deadline (30 s if none) to c and unblocks c's reads
// when ctx is cancelled; the returned func lifts both.
func bound(ctx context.Context, c net.Conn) func() {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	return func() {
		stop()
		c.SetDeadline(time.Time{})
	}
}

// tagged reads responses up to the one tagged tag, collecting the
// capabilities announced on the way (untagged CAPABILITY or a
// [CAPABILITY ...] code). A "+" continuation means the server wants
// something we did not plan to send: an error.
func tagged(br *bufio.Reader, tag string) (string, []string, error) {
	var caps []string
	for {
		line, err := readLine(br)
		if err != nil {
			return "", nil, err
		}
		if c := capsOf(line); c != nil {
			caps = c
		}
		switch {
		case strings.HasPrefix(line, tag+" "):
			return line, caps, nil
		case strings.HasPrefix(line, "+"):
			return "", nil, fmt.Errorf("unexpected continuation %q", line)
		}
	}
}

func okLine(line, tag string) bool {
	return strings.HasPrefix(strings.ToUpper(line), strings.ToUpper(tag)+" OK")
}

// capsOf extracts a capability list from a response line, or nil.
func capsOf(line string) []string {
	if rest, ok := strings.CutPrefix(line, "* CAPABILITY "); ok {
		return strings.Fields(rest)
	}
	i := strings.Index(line, "[CAPABILITY ")
	if i < 0 {
		return nil
	}
	rest := line[i+len("[CAPABILITY "):]
	j := strings.IndexByte(rest, ']')
	if j < 0 {
		return nil
	}
	return strings.Fields(rest[:j])
}

// proxy logs in to the mailbox server for the user and relays the session
// (A5).
func (ss *session) proxy(tag string, dec auth.Decision) error {
	user := dec.User.Name
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.opts.DialTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, clientKey{}, ss.conn.RemoteAddr())
	backend, err := ss.s.dialBackend(ctx, dec.Server, dec.ProxyTo, user)
	if err != nil {
		ss.log.Warn("IMAP proxy to mailbox server failed", "user", user, "mailbox_server", dec.Server, "addr", dec.ProxyTo, "err", err)
		return ss.refuse(tag, &auth.Error{Kind: auth.TempFail, Msg: "your mailbox server is not reachable; try again later"})
	}
	if !ss.s.track(nil, backend) {
		backend.Close()
		return errors.New("server closing")
	}
	defer ss.s.untrack(nil, backend)
	code := ""
	if caps := backend.Capabilities(); len(caps) > 0 {
		code = "[CAPABILITY " + strings.Join(caps, " ") + "] "
	}
	if err := ss.writef(tag + " OK " + code + "Logged in (proxied to " + dec.Server + ")"); err != nil {
		backend.Close()
		return err
	}
	ss.done = true
	ss.conn.SetDeadline(time.Time{})
	ss.log.Info("IMAP session proxied", "user", user, "mailbox_server", dec.Server, "addr", dec.ProxyTo)
	relay(handoverConn(ss.conn, ss.br), backend)
	return nil
}

// relay copies bytes both ways until either side closes, then closes both.
func relay(client, backend net.Conn) {
	var once sync.Once
	closeBoth := func() { client.Close(); backend.Close() }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(backend, client)
		once.Do(closeBoth)
	}()
	go func() {
		defer wg.Done()
		io.Copy(client, backend)
		once.Do(closeBoth)
	}()
	wg.Wait()
}

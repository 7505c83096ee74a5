package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	mtextproto "github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"pfrouter/envelope"
)

// TLS modes of a smarthost.
const (
	TLSRequired      = "required"      // STARTTLS with a verified certificate, or nothing is sent
	TLSOpportunistic = "opportunistic" // STARTTLS when offered (verified all the same), else plain text
)

// Smarthost is the relay client in "foreign MTA" mode: it hands mail that
// leaves the organization to a smarthost of an outbound connector. Unlike
// Client it trusts nothing about the peer: the smarthost's certificate is
// verified against the system roots (or RootCAs), never skipped; AUTH is
// sent only inside TLS; and no relay metadata or trace context leaves the
// organization (StripInternal).
type Smarthost struct {
	Self    string // EHLO name
	Addr    string // host:port
	TLSMode string // TLSRequired (default) or TLSOpportunistic
	// RootCAs verifies the smarthost; nil means the system roots.
	RootCAs *x509.CertPool
	// Username and Password, when set, log in with AUTH PLAIN after
	// STARTTLS. Without TLS they are never sent.
	Username, Password string
	Timeout            time.Duration
}

// ErrNoTLS is a smarthost that does not offer STARTTLS while TLS is
// required: nothing was sent, not even the envelope.
var ErrNoTLS = errors.New("the smarthost offers no STARTTLS and the connector requires TLS; nothing was sent")

// Send hands one message to the smarthost. A *ConnError means nothing was
// handed over (connection, TLS, authentication); otherwise each recipient
// has the smarthost's verdict, as with Client.Send.
func (s *Smarthost) Send(ctx context.Context, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	cl, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	res, err := transaction(s.Addr, cl, from, rcpts, StripInternal(body))
	if err != nil {
		return nil, &ConnError{s.Addr, err}
	}
	cl.Quit()
	return res, nil
}

// Probe opens a session as Send does (greeting, EHLO, STARTTLS as the TLS
// mode wants, AUTH) and quits before MAIL: whether the smarthost could take
// mail now. The error is a *ConnError.
func (s *Smarthost) Probe(ctx context.Context) error {
	cl, err := s.dial(ctx)
	if err != nil {
		return err
	}
	cl.Quit()
	return nil
}

func (s *Smarthost) dial(ctx context.Context) (*smtp.Client, error) {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, &ConnError{s.Addr, fmt.Errorf("smarthost address: %w", err)}
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, &ConnError{s.Addr, err}
	}
	conn.SetDeadline(time.Now().Add(timeout))
	cfg := &tls.Config{ServerName: host, RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12}
	tconn, tlsOn, err := smarthostTLS(conn, s.Self, cfg, s.TLSMode != TLSOpportunistic)
	if err != nil {
		conn.Close()
		return nil, &ConnError{s.Addr, err}
	}
	conn.SetDeadline(time.Time{})
	cl := smtp.NewClient(tconn)
	cl.CommandTimeout = timeout
	cl.SubmissionTimeout = 2 * timeout
	fail := func(err error) (*smtp.Client, error) {
		cl.Close()
		return nil, &ConnError{s.Addr, err}
	}
	if err := cl.Hello(s.Self); err != nil {
		return fail(err)
	}
	if s.Username != "" {
		if !tlsOn {
			return fail(errors.New("the smarthost offers no STARTTLS: credentials are not sent in plain text; nothing was sent"))
		}
		if err := cl.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return fail(fmt.Errorf("log in to smarthost %s as %s: %w", s.Addr, s.Username, err))
		}
	}
	return cl, nil
}

// smarthostTLS reads the greeting, says EHLO and upgrades with STARTTLS
// when offered, verifying the certificate with cfg. When STARTTLS is not
// offered it fails if required, before any envelope is sent, else goes on
// in plain text. It returns a conn on which a fresh greeting is replayed
// for go-smtp's client (whose own STARTTLS would say EHLO as "localhost").
func smarthostTLS(conn net.Conn, self string, cfg *tls.Config, required bool) (net.Conn, bool, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", self); err != nil {
		return nil, false, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, false, fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, l := range strings.Split(msg, "\n") {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offered = true
		}
	}
	greeting := []byte("220 smarthost ready\r\n")
	if !offered {
		if required {
			return nil, false, ErrNoTLS
		}
		return &replayConn{Conn: conn, pending: greeting}, false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, false, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("STARTTLS: %w", err)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, false, fmt.Errorf("TLS handshake with the smarthost: %w", err)
	}
	return &replayConn{Conn: tc, pending: greeting}, true, nil
}

// StripInternal removes what must not leave the organization from a
// message's header: every X-Pfrouter-* field (routing state, queue ids,
// admin metadata) and the W3C trace context (Traceparent, Tracestate),
// which would tie an outside reader to internal traces. Received fields
// stay, as every MTA keeps them. A message whose header cannot be parsed is
// returned as it is: smtpd parsed it on the way in, so this does not happen
// for mail that passed through it.
func StripInternal(body []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(body))
	h, err := mtextproto.ReadHeader(br)
	if err != nil {
		return body
	}
	removed := false
	for f := h.Fields(); f.Next(); {
		if envelope.IsInternalHeader(f.Key()) {
			f.Del()
			removed = true
		}
	}
	if !removed {
		return body
	}
	var out bytes.Buffer
	out.Grow(len(body))
	if err := mtextproto.WriteHeader(&out, h); err != nil {
		return body
	}
	out.ReadFrom(br)
	return out.Bytes()
}

// transaction runs MAIL, RCPT and DATA on go-smtp's client (smarthosts;
// peer servers get the pipelined session of session.go). A reply refuses recipients (see
// ReplyError); any other failure is returned and ends the session.
func transaction(addr string, cl *smtp.Client, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	out := make([]RcptResult, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
	}
	// refuse gives every recipient still accepted the reply of a
	// message-level command, or returns the error that ends the session.
	refuse := func(cmd string, err error) ([]RcptResult, error) {
		re := replyError(addr, cmd, err)
		if re == nil {
			return nil, err
		}
		for i := range out {
			if out[i].Err == nil {
				re.Rcpts = append(re.Rcpts, out[i].Rcpt)
			}
		}
		for i := range out {
			if out[i].Err == nil {
				out[i].Err = re
			}
		}
		return out, nil
	}
	if err := cl.Mail(from, &smtp.MailOptions{Size: int64(len(body))}); err != nil {
		return refuse("MAIL", err)
	}
	accepted := 0
	for i, r := range rcpts {
		if err := cl.Rcpt(r, nil); err != nil {
			re := replyError(addr, "RCPT", err)
			if re == nil {
				return nil, err
			}
			re.Rcpts = []string{r}
			out[i].Err = re
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return out, cl.Reset()
	}
	w, err := cl.Data()
	if err != nil {
		return refuse("DATA", err)
	}
	if _, err := w.Write(body); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return refuse("DATA", err)
	}
	return out, nil
}

// replayConn yields pending bytes before reading from the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

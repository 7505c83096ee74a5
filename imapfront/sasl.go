package imapfront

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"

	"pfrouter/auth"
)

// errCancelled is a client's "*" answer to a SASL challenge.
var errCancelled = errors.New("AUTHENTICATE cancelled")

// authenticate runs AUTHENTICATE PLAIN, SCRAM-SHA-256 or, for peer servers,
// EXTERNAL (RFC 9051 §6.2.2, SASL-IR RFC 4959, EXTERNAL RFC 4422 App. A).
func (ss *session) authenticate(cmd command) error {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 {
		return ss.badCommand(cmd.Tag, "AUTHENTICATE needs a mechanism and at most an initial response")
	}
	mech := strings.ToUpper(cmd.Args[0])
	var ir *string
	if len(cmd.Args) == 2 {
		ir = &cmd.Args[1]
	}
	switch mech {
	case auth.MechPlain:
		return ss.authPlain(cmd.Tag, ir)
	case auth.MechSCRAM256:
		return ss.authSCRAM(cmd.Tag, ir)
	case auth.MechExternal:
		return ss.authExternal(cmd.Tag, ir)
	}
	return ss.writef(cmd.Tag + " NO Unsupported authentication mechanism")
}

// response gets the client's next SASL message: the initial response if
// given, else one line after a "+" challenge. It returns a *badCommand for
// bad base64, errCancelled for "*".
func (ss *session) response(tag string, ir *string, challenge []byte) ([]byte, error) {
	var line string
	if ir != nil {
		line = *ir
	} else {
		if err := ss.writef("+ " + base64.StdEncoding.EncodeToString(challenge)); err != nil {
			return nil, err
		}
		l, err := readLine(ss.br)
		if err != nil {
			return nil, err
		}
		line = l
	}
	switch line {
	case "*":
		return nil, errCancelled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, &badCommand{tag: tag, msg: "invalid base64 in SASL response"}
	}
	return b, nil
}

// saslError answers a failed read of a SASL response; nil means the session
// goes on.
func (ss *session) saslError(tag string, err error) error {
	var bad *badCommand
	switch {
	case errors.Is(err, errCancelled):
		return ss.badCommand(tag, "AUTHENTICATE cancelled")
	case errors.As(err, &bad):
		return ss.badCommand(tag, bad.msg)
	}
	ss.endOnError(err)
	return err
}

func (ss *session) authPlain(tag string, ir *string) error {
	// Refuse before the client sends its password when plain is not
	// allowed now (A2).
	if err := ss.s.opts.Policy.Check(ss.s.ctx, auth.IMAP, auth.MechPlain, ss.tls, ss.conn.RemoteAddr()); err != nil {
		return ss.refuse(tag, err)
	}
	msg, err := ss.response(tag, ir, nil)
	if err != nil {
		return ss.saslError(tag, err)
	}
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 {
		return ss.badCommand(tag, "malformed PLAIN response")
	}
	dec, err := ss.s.opts.Policy.Authenticate(ss.s.ctx, auth.Request{Protocol: auth.IMAP, Mechanism: auth.MechPlain,
		AuthzID: string(parts[0]), Username: string(parts[1]), Password: string(parts[2]), TLS: ss.tls, Remote: ss.conn.RemoteAddr(), Client: ss.client})
	if err != nil {
		return ss.refuse(tag, err)
	}
	return ss.loggedIn(tag, dec)
}

// authExternal is a peer server logging in for a user (A5): the TLS client
// certificate is the credential, the response the user it acts for.
func (ss *session) authExternal(tag string, ir *string) error {
	if err := ss.s.opts.Policy.Check(ss.s.ctx, auth.IMAP, auth.MechExternal, ss.tls, ss.conn.RemoteAddr()); err != nil {
		return ss.refuse(tag, err)
	}
	msg, err := ss.response(tag, ir, nil)
	if err != nil {
		return ss.saslError(tag, err)
	}
	r := auth.Request{Protocol: auth.IMAP, Mechanism: auth.MechExternal, AuthzID: string(msg), TLS: ss.tls,
		Remote: ss.conn.RemoteAddr(), Client: ss.client}
	if c, ok := ss.conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := c.ConnectionState()
		r.TLSState = &cs
	}
	dec, err := ss.s.opts.Policy.Authenticate(ss.s.ctx, r)
	if err != nil {
		return ss.refuse(tag, err)
	}
	return ss.loggedIn(tag, dec)
}

func (ss *session) authSCRAM(tag string, ir *string) error {
	conv, err := ss.s.opts.Policy.SCRAM(ss.s.ctx, auth.IMAP, ss.tls, ss.conn.RemoteAddr())
	if err != nil {
		return ss.refuse(tag, err)
	}
	var challenge []byte
	for !conv.Done() {
		msg, err := ss.response(tag, ir, challenge)
		ir = nil
		if err != nil {
			return ss.saslError(tag, err)
		}
		out, err := conv.Step(ss.s.ctx, string(msg))
		if err != nil {
			return ss.refuse(tag, err)
		}
		challenge = []byte(out)
	}
	// The server signature goes out as a last challenge; the client
	// answers with an empty response (RFC 9051 has no success data).
	msg, err := ss.response(tag, nil, challenge)
	if err != nil {
		return ss.saslError(tag, err)
	}
	if len(msg) != 0 {
		return ss.badCommand(tag, "unexpected data after SCRAM server-final")
	}
	dec, _ := conv.Decision()
	return ss.loggedIn(tag, dec)
}

package pop3d

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// This file holds the AUTHORIZATION state: USER/PASS, AUTH PLAIN, STLS and
// the hand-over to a Maildrop or a proxied backend.

func (ss *session) cmdUser(cmd command) {
	if !ss.plaintextAllowed() {
		ss.badCommand("AUTH", "plaintext login not allowed on this connection; use STLS first")
		return
	}
	if len(cmd.Args) == 0 {
		ss.badCommand("", "USER needs a mailbox name")
		return
	}
	// Always +OK: saying whether the user exists would leak it.
	ss.pendingUser = strings.TrimSpace(cmd.Rest)
	ss.reply("+OK send PASS")
}

func (ss *session) cmdPass(cmd command) {
	user := ss.pendingUser
	ss.pendingUser = ""
	if user == "" {
		ss.badCommand("", "USER first")
		return
	}
	if cmd.Rest == "" {
		ss.badCommand("", "PASS needs a password")
		return
	}
	ss.login(AuthRequest{Mechanism: "USER", Username: user, Password: cmd.Rest})
}

func (ss *session) cmdAuth(cmd command) {
	ss.pendingUser = ""
	if len(cmd.Args) == 0 {
		// Not in RFC 5034, but widely expected (RFC 1734 clients): list
		// the mechanisms.
		ss.reply("+OK SASL mechanisms follow")
		if ss.plaintextAllowed() {
			ss.reply("PLAIN")
		}
		ss.reply(".")
		return
	}
	if len(cmd.Args) > 2 {
		ss.badCommand("", "AUTH takes a mechanism and an optional initial response")
		return
	}
	external := strings.EqualFold(cmd.Args[0], "EXTERNAL")
	if !external && !strings.EqualFold(cmd.Args[0], "PLAIN") {
		ss.badCommand("", "unsupported SASL mechanism")
		return
	}
	if external && !ss.tls {
		ss.badCommand("AUTH", "EXTERNAL needs TLS with a client certificate; use STLS first")
		return
	}
	if !external && !ss.plaintextAllowed() {
		ss.badCommand("AUTH", "plaintext authentication not allowed on this connection; use STLS first")
		return
	}
	var resp string
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1]
		if resp == "=" { // RFC 5034 §4: empty initial response
			resp = ""
		}
	} else {
		// Empty challenge, then the client's response on its own line.
		ss.reply("+ ")
		if ss.flush() != nil {
			return
		}
		_ = ss.conn.SetReadDeadline(time.Now().Add(ss.srv.opts.IdleTimeout))
		line, err := readLine(ss.r, maxSASLLine)
		switch {
		case err == nil:
		case errors.Is(err, errLineTooLong):
			ss.badCommand("", "line too long")
			return
		default:
			ss.end = true
			return
		}
		resp = string(line)
		if resp == "*" {
			ss.reply("-ERR authentication cancelled")
			return
		}
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		ss.badCommand("", "invalid base64 in SASL response")
		return
	}
	if external {
		// RFC 4422 App. A: the response is the authorization identity.
		ss.login(AuthRequest{Mechanism: "EXTERNAL", AuthzID: string(raw)})
		return
	}
	authz, user, pass, ok := parsePlain(raw)
	if !ok {
		ss.badCommand("AUTH", "malformed SASL PLAIN response")
		return
	}
	ss.login(AuthRequest{Mechanism: "PLAIN", AuthzID: authz, Username: user, Password: pass})
}

// parsePlain splits an RFC 4616 message: [authzid] NUL authcid NUL passwd,
// with authcid and passwd non-empty.
func parsePlain(b []byte) (authz, user, pass string, ok bool) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", "", false
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), true
}

// login asks the Authenticator and, on success, enters the TRANSACTION
// state or arranges the proxy relay.
func (ss *session) login(req AuthRequest) {
	req.TLS = ss.tls
	req.Remote = ss.conn.RemoteAddr()
	req.Client = ss.client
	if tc, ok := ss.conn.(interface{ ConnectionState() tls.ConnectionState }); ok && ss.tls {
		cs := tc.ConnectionState()
		req.TLSState = &cs
	}
	log := ss.log.With("user", req.Username, "mechanism", req.Mechanism, "tls", req.TLS, "authzid", req.AuthzID)
	res, err := ss.srv.opts.Auth.Authenticate(ss.ctx, req)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) {
			log.Info("login refused", "code", ae.Code, "reason", ae.Msg)
			ss.badCommand(ae.Code, ae.Msg)
			return
		}
		log.Warn("authentication backend failed", "err", err)
		ss.replyErr("SYS/TEMP", "authentication temporarily unavailable; try again later")
		return
	}
	if (res.Proxy == nil) == (res.Maildrop == nil) {
		log.Error("Authenticator returned a Result without exactly one of Maildrop and Proxy")
		if res.Proxy != nil {
			res.Proxy.Close()
		}
		if res.Maildrop != nil {
			res.Maildrop.Close()
		}
		ss.replyErr("SYS/TEMP", "internal error; try again later")
		return
	}
	user := res.User
	if user == "" {
		user = req.Username
	}
	release, ok := ss.srv.lim.User(user)
	if !ok {
		log.Warn("too many sessions for one user", "limit", ss.srv.opts.MaxConnsPerUser)
		if res.Proxy != nil {
			res.Proxy.Close()
		}
		if res.Maildrop != nil {
			res.Maildrop.Close()
		}
		ss.replyErr("IN-USE", "too many sessions for this user; try again later")
		return
	}
	ss.releaseUser = release
	if res.Proxy != nil {
		log.Info("login; proxying to backend", "backend", res.Proxy.RemoteAddr().String())
		ss.user = user
		ss.proxy = res.Proxy
		ss.reply("+OK logged in")
		return
	}
	msgs, err := res.Maildrop.Messages(ss.ctx)
	if err != nil {
		log.Warn("listing maildrop failed", "err", err)
		if cerr := res.Maildrop.Close(); cerr != nil {
			log.Warn("closing maildrop failed", "err", cerr)
		}
		ss.replyErr("SYS/TEMP", "cannot open maildrop; try again later")
		return
	}
	ss.user, ss.md, ss.msgs = user, res.Maildrop, msgs
	ss.deleted = make([]bool, len(msgs))
	ss.state = stateTransaction
	n, size := ss.stat()
	log.Info("login", "messages", n, "octets", size)
	ss.reply("+OK logged in; maildrop has %d messages (%d octets)", n, size)
}

// cmdSTLS upgrades the connection (RFC 2595 §4).
func (ss *session) cmdSTLS(command) {
	cfg := ss.srv.opts.TLSConfig
	switch {
	case ss.tls:
		ss.badCommand("", "TLS already active")
		return
	case cfg == nil:
		ss.badCommand("", "STLS not available")
		return
	}
	ss.reply("+OK begin TLS negotiation")
	if ss.flush() != nil {
		return
	}
	tc := tls.Server(ss.conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(ss.srv.opts.IdleTimeout))
	if err := tc.HandshakeContext(ss.ctx); err != nil {
		ss.log.Info("STLS handshake failed", "err", err)
		ss.end = true
		return
	}
	// Reset drops any plaintext the client pipelined after STLS, so it
	// cannot be taken as sent under TLS (the CVE-2011-0411 injection).
	ss.conn = tc
	ss.r.Reset(tc)
	ss.w.Reset(tc)
	ss.tls = true
	ss.pendingUser = ""
}

package imapfront

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"pfrouter/auth"
)

const (
	maxBadCommands = 10
	maxAuthFailure = 3
)

// session is one client connection in the not-authenticated state.
type session struct {
	s      *Server
	conn   net.Conn // the current transport: raw, or TLS after STARTTLS
	br     *bufio.Reader
	bw     *bufio.Writer
	tls    bool
	log    *slog.Logger
	bad    int
	failed int
	done   bool // the connection was handed over or must close
	// client is the address a front end proxying this session reported
	// in ID (x-originating-ip/-port); auth trusts it only if the login
	// that follows is a verified server login.
	client net.Addr

	releaseIP, releaseUser func() // connection-cap slots held (nil: none)
}

func (ss *session) releaseSlots() {
	for _, f := range []func(){ss.releaseIP, ss.releaseUser} {
		if f != nil {
			f()
		}
	}
}

// admitUser takes a slot of the per-user cap for an accepted login; a
// peer server's proxied session gives back its address's slot (its
// sessions count against their users, not against the front end's IP).
func (ss *session) admitUser(dec auth.Decision) bool {
	release, ok := ss.s.lim.User(dec.User.Name)
	if !ok {
		ss.log.Warn("too many sessions for one user", "user", dec.User.Name, "limit", ss.s.opts.MaxConnsPerUser)
		ss.writef("* BYE [UNAVAILABLE] Too many sessions for this user, try again later")
		return false
	}
	ss.releaseUser = release
	if dec.ViaServer != "" && ss.releaseIP != nil {
		ss.releaseIP()
		ss.releaseIP = nil
	}
	return true
}

func newSession(s *Server, conn net.Conn, implicitTLS bool) *session {
	return &session{s: s, conn: conn, br: bufio.NewReader(conn), bw: bufio.NewWriter(conn), tls: implicitTLS,
		log: s.log.With("remote", conn.RemoteAddr().String())}
}

func (ss *session) writef(lines ...string) error {
	for _, l := range lines {
		ss.bw.WriteString(l)
		ss.bw.WriteString("\r\n")
	}
	return ss.bw.Flush()
}

// capabilities are what the client may use now, before logging in.
func (ss *session) capabilities() string {
	caps := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID"}
	if !ss.tls && ss.s.opts.TLSConfig != nil {
		caps = append(caps, "STARTTLS")
	}
	if !ss.s.opts.Policy.PlainAllowed(ss.tls) {
		caps = append(caps, "LOGINDISABLED")
	}
	for _, m := range ss.s.opts.Policy.SASLMechanisms(ss.tls) {
		caps = append(caps, "AUTH="+m)
	}
	return strings.Join(caps, " ")
}

func (ss *session) run() {
	if err := ss.conn.SetDeadline(time.Now().Add(ss.s.opts.PreAuthTimeout)); err != nil {
		return
	}
	if err := ss.writef("* OK [CAPABILITY " + ss.capabilities() + "] pfrouter " + ss.s.opts.ServerName + " ready"); err != nil {
		ss.log.Debug("greeting failed", "err", err)
		return
	}
	for !ss.done {
		ss.conn.SetDeadline(time.Now().Add(ss.s.opts.PreAuthTimeout))
		cmd, err := readCommand(ss.br, func() error { return ss.writef("+ Ready for literal data") })
		if err != nil {
			var bad *badCommand
			if errors.As(err, &bad) {
				if ss.badCommand(bad.tag, bad.msg) != nil {
					return
				}
				continue
			}
			ss.endOnError(err)
			return
		}
		if err := ss.dispatch(cmd); err != nil {
			ss.log.Debug("session ended", "err", err)
			return
		}
	}
}

func (ss *session) endOnError(err error) {
	var fatal *fatalError
	switch {
	case errors.Is(err, errLineTooLong):
		ss.writef("* BYE Line too long")
	case errors.As(err, &fatal):
		ss.writef("* BYE " + fatal.msg)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ss.writef("* BYE Autologout; idle for too long")
		}
	}
	ss.log.Debug("session ended", "err", err)
}

// badCommand answers BAD and ends the session after too many.
func (ss *session) badCommand(tag, msg string) error {
	ss.bad++
	if tag == "" {
		tag = "*"
	}
	if err := ss.writef(tag + " BAD " + msg); err != nil {
		return err
	}
	if ss.bad >= maxBadCommands {
		ss.writef("* BYE Too many bad commands")
		return errors.New("too many bad commands")
	}
	return nil
}

// postAuthCommands are refused here with a hint to log in first.
var postAuthCommands = map[string]bool{
	"SELECT": true, "EXAMINE": true, "CREATE": true, "DELETE": true, "RENAME": true, "SUBSCRIBE": true,
	"UNSUBSCRIBE": true, "LIST": true, "LSUB": true, "NAMESPACE": true, "STATUS": true, "APPEND": true,
	"IDLE": true, "CLOSE": true, "UNSELECT": true, "EXPUNGE": true, "SEARCH": true, "FETCH": true,
	"STORE": true, "COPY": true, "MOVE": true, "UID": true, "ENABLE": true, "CHECK": true,
}

func (ss *session) dispatch(cmd command) error {
	switch cmd.Name {
	case "CAPABILITY":
		return ss.writef("* CAPABILITY "+ss.capabilities(), cmd.Tag+" OK CAPABILITY completed")
	case "NOOP":
		return ss.writef(cmd.Tag + " OK NOOP completed")
	case "LOGOUT":
		ss.done = true
		return ss.writef("* BYE pfrouter "+ss.s.opts.ServerName+" logging out", cmd.Tag+" OK LOGOUT completed")
	case "ID":
		ss.client = originatingAddr(cmd.Args)
		return ss.writef(`* ID ("name" "pfrouter")`, cmd.Tag+" OK ID completed")
	case "STARTTLS":
		return ss.startTLS(cmd)
	case "LOGIN":
		return ss.login(cmd)
	case "AUTHENTICATE":
		return ss.authenticate(cmd)
	}
	if postAuthCommands[cmd.Name] {
		return ss.badCommand(cmd.Tag, cmd.Name+" is not allowed before logging in")
	}
	return ss.badCommand(cmd.Tag, "unknown command "+cmd.Name)
}

func (ss *session) startTLS(cmd command) error {
	if ss.tls {
		return ss.badCommand(cmd.Tag, "TLS is already active")
	}
	if ss.s.opts.TLSConfig == nil {
		return ss.badCommand(cmd.Tag, "STARTTLS is not available")
	}
	if len(cmd.Args) != 0 {
		return ss.badCommand(cmd.Tag, "STARTTLS takes no arguments")
	}
	if err := ss.writef(cmd.Tag + " OK Begin TLS negotiation now"); err != nil {
		return err
	}
	if ss.br.Buffered() > 0 {
		// Plaintext sent after STARTTLS would be taken as coming over TLS
		// (command injection, CVE-2011-0411 style): drop the connection.
		ss.log.Warn("client sent data after STARTTLS before the TLS handshake; closing")
		return errors.New("pipelined data after STARTTLS")
	}
	tc := tls.Server(ss.conn, ss.s.opts.TLSConfig)
	if err := tc.HandshakeContext(ss.s.ctx); err != nil {
		return err
	}
	ss.conn, ss.tls = tc, true
	ss.br.Reset(tc)
	ss.bw.Reset(tc)
	return nil
}

func (ss *session) login(cmd command) error {
	if len(cmd.Args) != 2 {
		return ss.badCommand(cmd.Tag, "LOGIN needs a user name and a password")
	}
	dec, err := ss.s.opts.Policy.Authenticate(ss.s.ctx, auth.Request{Protocol: auth.IMAP, Mechanism: auth.MechLogin,
		Username: cmd.Args[0], Password: cmd.Args[1], TLS: ss.tls, Remote: ss.conn.RemoteAddr(), Client: ss.client})
	if err != nil {
		return ss.refuse(cmd.Tag, err)
	}
	return ss.loggedIn(cmd.Tag, dec)
}

// refuse answers a refused login with NO and its response code.
func (ss *session) refuse(tag string, err error) error {
	var ae *auth.Error
	code, msg := "UNAVAILABLE", "internal error, try again later"
	if errors.As(err, &ae) {
		code, msg = ae.IMAPCode(), ae.Msg
	} else {
		ss.log.Error("login failed", "err", err)
	}
	if werr := ss.writef(tag + " NO [" + code + "] " + oneLine(msg)); werr != nil {
		return werr
	}
	ss.failed++
	if ss.failed >= maxAuthFailure {
		ss.writef("* BYE Too many failed logins")
		return errors.New("too many failed logins")
	}
	return nil
}

func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

// loggedIn serves the session locally or proxies it (A5). The session ends
// here either way.
func (ss *session) loggedIn(tag string, dec auth.Decision) error {
	user := dec.User.Name
	if !ss.admitUser(dec) {
		ss.done = true
		return errors.New("per-user session cap reached")
	}
	if dec.Local {
		if ss.s.opts.Local == nil {
			return ss.refuse(tag, errors.New("no local IMAP server configured"))
		}
		if err := ss.writef(tag + " OK [CAPABILITY " + strings.Join(ss.s.opts.Capabilities, " ") + "] Logged in"); err != nil {
			return err
		}
		ss.done = true
		ss.conn.SetDeadline(time.Time{})
		ss.log.Info("IMAP session handed over", "user", user, "via", dec.ViaServer, "tls", ss.tls, "referral", dec.PublicOnly)
		serve := ss.s.opts.Local.ServeConn
		if dec.PublicOnly {
			// A peer server's public folder referral session (issue 13).
			r, ok := ss.s.opts.Local.(interface {
				ServeReferral(conn net.Conn, user string) error
			})
			if !ok {
				return errors.New("imapfront: referral session refused: no referral server configured")
			}
			serve = r.ServeReferral
		}
		if err := serve(handoverConn(ss.conn, ss.br), user); err != nil {
			ss.log.Debug("local session ended", "user", user, "err", err)
		}
		return nil
	}
	return ss.proxy(tag, dec)
}

package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"
)

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// session is one client connection, from greeting to close. It is used by
// one goroutine only.
type session struct {
	srv  *Server
	ctx  context.Context
	log  *slog.Logger
	conn net.Conn // replaced by the *tls.Conn after STLS
	r    *bufio.Reader
	w    *bufio.Writer
	tls  bool
	// client is the address a proxying front end reported (XCLIENT).
	client net.Addr

	state state
	bad   int
	end   bool // close after flushing

	pendingUser string // from USER, waiting for PASS

	user    string
	md      Maildrop
	msgs    []MessageInfo
	deleted []bool
	proxy   net.Conn
	buf     []byte // message copy buffer, reused across RETR/TOP
	// releaseUser gives back the per-user slot taken at login.
	releaseUser func()
}

// handlers maps each command to the state it is valid in. CAPA and QUIT
// are valid in both and handled before the state check.
var handlers = map[string]struct {
	state state
	fn    func(*session, command)
}{
	"USER": {stateAuthorization, (*session).cmdUser},
	"PASS": {stateAuthorization, (*session).cmdPass},
	"AUTH": {stateAuthorization, (*session).cmdAuth},
	"STLS": {stateAuthorization, (*session).cmdSTLS},
	// XCLIENT: a front end proxying a session reports its client's
	// address (Dovecot/Postfix convention); auth uses it only if the login
	// that follows is a verified server login.
	"XCLIENT": {stateAuthorization, (*session).cmdXClient},
	"STAT":    {stateTransaction, (*session).cmdStat},
	"LIST":    {stateTransaction, (*session).cmdList},
	"UIDL":    {stateTransaction, (*session).cmdUIDL},
	"TOP":     {stateTransaction, (*session).cmdTop},
	"RETR":    {stateTransaction, (*session).cmdRetr},
	"DELE":    {stateTransaction, (*session).cmdDele},
	"RSET":    {stateTransaction, (*session).cmdRset},
	"NOOP":    {stateTransaction, (*session).cmdNoop},
}

func (s *Server) serveConn(c net.Conn) {
	release, ok := s.lim.IP(c.RemoteAddr())
	if !ok {
		s.log.Warn("too many connections from one address", "remote", c.RemoteAddr().String(), "limit", s.opts.MaxConnsPerIP)
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n")
		c.Close()
		return
	}
	defer release()
	ss := &session{
		srv:  s,
		ctx:  s.ctx,
		log:  s.log.With("remote", c.RemoteAddr().String()),
		conn: c,
		r:    bufio.NewReader(c),
		w:    bufio.NewWriter(c),
	}
	defer ss.releaseMaildrop()
	defer func() {
		if ss.releaseUser != nil {
			ss.releaseUser()
		}
	}()

	if tc, ok := c.(*tls.Conn); ok {
		// Implicit TLS: finish the handshake first so TLS state is known
		// (CAPA, AuthRequest.TLS) and a failed handshake is logged.
		_ = c.SetDeadline(time.Now().Add(s.opts.IdleTimeout))
		if err := tc.HandshakeContext(ss.ctx); err != nil {
			ss.log.Info("TLS handshake failed", "err", err)
			return
		}
		ss.tls = true
	}
	ss.log.Debug("session start", "tls", ss.tls)
	ss.reply("+OK %s POP3 server ready", s.opts.Hostname)
	ss.loop()
	if ss.proxy != nil {
		ss.relay()
	}
	// Close the possibly-TLS conn so a TLS client gets close_notify; the
	// Server closes the raw conn as well.
	ss.conn.Close()
	ss.log.Debug("session end", "user", ss.user)
}

func (ss *session) loop() {
	idle := ss.srv.opts.IdleTimeout
	for !ss.end && ss.proxy == nil {
		if !hasBufferedLine(ss.r) {
			if err := ss.flush(); err != nil {
				return
			}
		}
		_ = ss.conn.SetReadDeadline(time.Now().Add(idle))
		line, err := readLine(ss.r, maxCommandLine)
		_ = ss.conn.SetWriteDeadline(time.Now().Add(idle))
		switch {
		case err == nil:
		case errors.Is(err, errLineTooLong):
			ss.badCommand("", "line too long")
			continue
		case isTimeout(err):
			// RFC 1939 §3 autologout: close without entering UPDATE.
			ss.log.Info("idle timeout", "user", ss.user)
			_ = ss.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			ss.reply("-ERR autologout; idle for too long")
			_ = ss.flush()
			return
		default:
			// EOF, reset, garbage: a dropped connection deletes nothing.
			if ss.state == stateTransaction {
				ss.log.Info("connection dropped in TRANSACTION state; no messages deleted", "user", ss.user, "err", err)
			}
			return
		}
		cmd, err := parseCommand(line)
		if err != nil {
			ss.badCommand("", "malformed command")
			continue
		}
		ss.dispatch(cmd)
	}
	_ = ss.flush()
}

func (ss *session) dispatch(cmd command) {
	switch cmd.Name {
	case "CAPA":
		ss.cmdCapa(cmd)
		return
	case "QUIT":
		ss.cmdQuit(cmd)
		return
	}
	h, ok := handlers[cmd.Name]
	if !ok {
		ss.badCommand("", "unknown command")
		return
	}
	if h.state != ss.state {
		ss.badCommand("", "command not valid in this state")
		return
	}
	h.fn(ss, cmd)
}

// reply queues one response line; errors surface at flush.
func (ss *session) reply(format string, args ...any) {
	fmt.Fprintf(ss.w, format, args...)
	ss.w.WriteString("\r\n")
}

// replyErr queues "-ERR [code] msg".
func (ss *session) replyErr(code, msg string) {
	if code != "" {
		ss.reply("-ERR [%s] %s", code, msg)
		return
	}
	ss.reply("-ERR %s", msg)
}

// badCommand answers -ERR and counts the error; past the limit the client
// is told and dropped.
func (ss *session) badCommand(code, msg string) {
	ss.bad++
	if ss.bad >= ss.srv.opts.MaxBadCommands {
		ss.log.Info("too many bad commands; closing", "user", ss.user, "count", ss.bad)
		ss.replyErr(code, msg+"; too many errors, closing connection")
		ss.end = true
		return
	}
	ss.replyErr(code, msg)
}

func (ss *session) flush() error {
	if err := ss.w.Flush(); err != nil {
		ss.log.Debug("write failed", "err", err)
		ss.end = true
		return err
	}
	return nil
}

func (ss *session) releaseMaildrop() {
	if ss.md == nil {
		return
	}
	if err := ss.md.Close(); err != nil {
		ss.log.Warn("closing maildrop failed", "user", ss.user, "err", err)
	}
	ss.md = nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// plaintextAllowed applies Options.PlaintextAllowed (SPEC A2).
func (ss *session) plaintextAllowed() bool {
	f := ss.srv.opts.PlaintextAllowed
	return f == nil || f(ss.tls)
}

func (ss *session) cmdCapa(command) {
	ss.reply("+OK capability list follows")
	if ss.state == stateAuthorization {
		if ss.plaintextAllowed() {
			ss.reply("USER")
			ss.reply("SASL PLAIN")
		}
		if ss.srv.opts.TLSConfig != nil && !ss.tls {
			ss.reply("STLS")
		}
	}
	for _, c := range []string{"TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "IMPLEMENTATION pfrouter"} {
		ss.reply("%s", c)
	}
	ss.reply(".")
}

func (ss *session) cmdQuit(command) {
	ss.end = true
	if ss.state != stateTransaction {
		ss.reply("+OK %s POP3 server signing off", ss.srv.opts.Hostname)
		return
	}
	ss.update()
}

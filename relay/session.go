package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// session is one SMTP session to a peer server, after STARTTLS and EHLO.
// It is the relay's own client rather than go-smtp's so that a message
// costs one round trip when the peer offers PIPELINING and CHUNKING (every
// pfrouter server does): MAIL, the RCPTs and BDAT LAST with the message
// are written at once and the replies read after (RFC 2920, RFC 3030), the
// message is not dot-stuffed, and a pooled session is reused without RSET
// or a new EHLO. A peer without them gets MAIL, RCPT and DATA one by one.
type session struct {
	conn    net.Conn // the TLS connection
	r       *textproto.Reader
	w       *bufio.Writer
	timeout time.Duration
	// ctx is the transaction's; mu orders its cut (a deadline in the
	// past) against deadline(), so a cut is never undone.
	mu  sync.Mutex
	ctx context.Context
	// what the peer offers after STARTTLS
	pipelining, chunking, size, eightBit, enhanced bool
	since                                          time.Time // when it went idle (pool)
}

// errNoReply marks an I/O failure before the peer answered anything in
// a transaction: on a pooled session that had gone stale, nothing was
// handed over and the message can be sent again on a new session.
var errNoReply = errors.New("the session failed before the peer answered")

// openSession reads the greeting, upgrades with STARTTLS (mandatory: a
// peer that does not offer it is refused, S5) and says EHLO inside TLS.
func openSession(conn net.Conn, self string, cfg *tls.Config, timeout time.Duration) (*session, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", self); err != nil {
		return nil, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if !hasExtension(msg, "STARTTLS") {
		_ = tp.PrintfLine("QUIT")
		return nil, errors.New("peer does not offer STARTTLS; refusing to relay in clear")
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	s := &session{conn: tc, r: textproto.NewReader(bufio.NewReader(tc)), w: bufio.NewWriterSize(tc, 4096), timeout: timeout}
	// RFC 3207: after STARTTLS the client starts over with EHLO.
	if _, err := s.w.WriteString("EHLO " + self + "\r\n"); err != nil {
		return nil, err
	}
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	_, msg, err = s.r.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO after STARTTLS: %w", err)
	}
	s.pipelining, s.chunking = hasExtension(msg, "PIPELINING"), hasExtension(msg, "CHUNKING")
	s.size, s.eightBit = hasExtension(msg, "SIZE"), hasExtension(msg, "8BITMIME")
	s.enhanced = hasExtension(msg, "ENHANCEDSTATUSCODES")
	conn.SetDeadline(time.Time{})
	return s, nil
}

// hasExtension reports whether an EHLO reply (lines joined by "\n", the
// greeting line first) lists ext.
func hasExtension(msg, ext string) bool {
	for _, l := range strings.Split(msg, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		if strings.EqualFold(name, ext) {
			return true
		}
	}
	return false
}

func (s *session) close() { s.conn.Close() }

// quit ends the session politely, without waiting long for the reply.
func (s *session) quit() {
	s.conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := s.w.WriteString("QUIT\r\n"); err == nil && s.w.Flush() == nil {
		s.r.ReadResponse(221)
	}
	s.conn.Close()
}

// send runs one transaction for rcpts. A reply refuses recipients (see
// ReplyError); any other failure is returned (errNoReply wrapped when the
// peer answered nothing) and ends the session. ctx ending cuts the session.
func (s *session) send(ctx context.Context, addr, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.conn.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	if s.pipelining && s.chunking {
		return s.sendPipelined(addr, from, rcpts, body)
	}
	return s.sendStepwise(addr, from, rcpts, body)
}

// deadline gives the next step d (the timeout, or twice it while the
// peer commits), never past the transaction's context.
func (s *session) deadline(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return // cut: the deadline stays in the past
	}
	t := time.Now().Add(d)
	if dl, ok := s.ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	s.conn.SetDeadline(t)
}

func (s *session) mailCommand(from string, size int) string {
	cmd := "MAIL FROM:<" + from + ">"
	if s.eightBit {
		cmd += " BODY=8BITMIME"
	}
	if s.size {
		cmd += " SIZE=" + strconv.Itoa(size)
	}
	return cmd + "\r\n"
}

// sendPipelined writes MAIL, every RCPT and BDAT LAST with the message in
// one go, then reads a reply to each. The peer answers every command even
// when an earlier one failed (BDAT without an accepted recipient is
// refused and its chunk discarded), so the session stays in step.
func (s *session) sendPipelined(addr, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	for _, a := range append([]string{from}, rcpts...) {
		if strings.ContainsAny(a, "\r\n") {
			return nil, fmt.Errorf("address %q contains a line break", a)
		}
	}
	// The commands and the message go out in one write: one TLS record
	// per 16 KB, one system call.
	mail := s.mailCommand(from, len(body))
	bdat := "BDAT " + strconv.Itoa(len(body)) + " LAST\r\n"
	n := len(mail) + len(bdat) + len(body)
	for _, r := range rcpts {
		n += len(r) + 12
	}
	buf := make([]byte, 0, n)
	buf = append(buf, mail...)
	for _, r := range rcpts {
		buf = append(append(append(buf, "RCPT TO:<"...), r...), ">\r\n"...)
	}
	buf = append(append(buf, bdat...), body...)
	s.deadline(s.timeout)
	if _, err := s.conn.Write(buf); err != nil {
		return nil, noReply(err)
	}
	out := newResults(rcpts)
	s.deadline(s.timeout)
	mailErr, err := s.reply(addr, "MAIL", 250)
	if err != nil {
		return nil, noReply(err)
	}
	accepted := 0
	for i := range rcpts {
		re, err := s.reply(addr, "RCPT", 250, 251)
		if err != nil {
			return nil, err
		}
		if mailErr == nil && re != nil {
			re.Rcpts = []string{rcpts[i]}
			out[i].Err = re
		} else if mailErr == nil {
			accepted++
		}
	}
	s.deadline(2 * s.timeout) // the peer commits before it answers
	dataErr, err := s.reply(addr, "DATA", 250)
	if err != nil {
		return nil, err
	}
	switch {
	case mailErr != nil:
		refuseRest(out, mailErr)
	case accepted > 0 && dataErr != nil:
		refuseRest(out, dataErr)
	}
	return out, nil
}

// sendStepwise is the transaction for a peer that does not pipeline or
// take BDAT: MAIL, each RCPT and DATA wait for their replies, the message
// is dot-stuffed.
func (s *session) sendStepwise(addr, from string, rcpts []string, body []byte) ([]RcptResult, error) {
	out := newResults(rcpts)
	cmd := func(line string, codes ...int) (*ReplyError, error) {
		s.deadline(s.timeout)
		if _, err := s.w.WriteString(line); err != nil {
			return nil, err
		}
		if err := s.w.Flush(); err != nil {
			return nil, err
		}
		verb, _, _ := strings.Cut(line, " ")
		return s.reply(addr, strings.TrimSpace(verb), codes...)
	}
	for _, a := range append([]string{from}, rcpts...) {
		if strings.ContainsAny(a, "\r\n") {
			return nil, fmt.Errorf("address %q contains a line break", a)
		}
	}
	re, err := cmd(s.mailCommand(from, len(body)), 250)
	if err != nil {
		return nil, noReply(err)
	}
	if re != nil {
		refuseRest(out, re)
		return out, nil
	}
	accepted := 0
	for i, r := range rcpts {
		re, err := cmd("RCPT TO:<"+r+">\r\n", 250, 251)
		if err != nil {
			return nil, err
		}
		if re != nil {
			re.Rcpts = []string{r}
			out[i].Err = re
			continue
		}
		accepted++
	}
	if accepted == 0 {
		if _, err := cmd("RSET\r\n", 250); err != nil {
			return nil, err
		}
		return out, nil
	}
	re, err = cmd("DATA\r\n", 354)
	if err != nil {
		return nil, err
	}
	if re != nil {
		refuseRest(out, re)
		return out, nil
	}
	s.deadline(s.timeout)
	dw := textproto.NewWriter(s.w).DotWriter()
	if _, err := dw.Write(body); err != nil {
		return nil, err
	}
	if err := dw.Close(); err != nil { // writes the final "." and flushes
		return nil, err
	}
	s.deadline(2 * s.timeout)
	re, err = s.reply(addr, "DATA", 250)
	if err != nil {
		return nil, err
	}
	if re != nil {
		refuseRest(out, re)
	}
	return out, nil
}

// reply reads one reply. A code in want is success (nil, nil); another
// 4xx or 5xx is a *ReplyError about the message; 421 (the peer closes the
// session), a malformed reply or an I/O failure is the error.
func (s *session) reply(addr, cmd string, want ...int) (*ReplyError, error) {
	code, msg, err := s.r.ReadResponse(0) // 0: any code; only a malformed reply is an error
	if err != nil {
		return nil, err
	}
	for _, w := range want {
		if code == w {
			return nil, nil
		}
	}
	if code < 400 || code > 599 || code == 421 {
		return nil, fmt.Errorf("%s: %d %s", cmd, code, msg)
	}
	re := &ReplyError{Addr: addr, Command: cmd, Code: code, Message: msg}
	if s.enhanced {
		re.Enhanced, re.Message = splitEnhanced(code, msg)
	}
	return re, nil
}

// splitEnhanced takes an RFC 3463 code ("5.3.4") off the front of a
// reply's text when its class matches the reply code's.
func splitEnhanced(code int, msg string) (string, string) {
	first, rest, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return "", msg
	}
	for _, p := range parts {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return "", msg
		}
	}
	return first, rest
}

func newResults(rcpts []string) []RcptResult {
	out := make([]RcptResult, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
	}
	return out
}

// refuseRest gives every recipient not refused yet the reply of a
// message-level command (MAIL, DATA), which names them.
func refuseRest(out []RcptResult, re *ReplyError) {
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
}

// noReply marks a failure to read the first reply of a transaction (the
// peer answered nothing) with errNoReply.
func noReply(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
		return fmt.Errorf("%w: %w", errNoReply, err)
	}
	return err
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

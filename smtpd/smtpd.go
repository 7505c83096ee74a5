// Package smtpd is pfrouter's SMTP ingress: go-smtp's wire protocol behind a
// Backend/Session pair. It checks each recipient at RCPT time (through a
// Checker, backed by the routing package's checks), authenticates users and
// the organization's servers, reads the message, strips relay metadata that
// did not come from a server, adds a Received header, and hands the message
// to an Acceptor (the queue manager) which makes it durable before 250 is
// answered (SPEC S1–S3, S5, S8). It decides nothing about where mail goes.
package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"pfrouter/envelope"
	"pfrouter/routing"
)

// Principal is who an SMTP session is authenticated as.
type Principal struct {
	User   string // a user of the organization
	Server string // a server of the organization: relay metadata is trusted
}

// Checker applies the sender and recipient checks that do not need the
// message body.
type Checker interface {
	CheckRecipient(rcpt, sender, senderUser string, size int64) *routing.Check
	// CheckSender says whether an authenticated user may use sender as
	// MAIL FROM: only one of that user's own addresses (no forged senders
	// through the organization, least of all to the outside).
	CheckSender(user, sender string) *routing.Check
}

// Authenticator checks AUTH PLAIN credentials; remote and tls let it rate
// limit per client and apply the login type.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote net.Addr, tls bool) (Principal, error)
}

// ServerVerifier names the server of the organization proven by a session's
// TLS client certificate, if it is one in the directory (S5).
type ServerVerifier interface {
	PeerServer(cs tls.ConnectionState) (server string, ok bool)
}

// Incoming is a message received and ready to queue.
type Incoming struct {
	From       string
	Recipients []string
	Principal  Principal
	Remote     string
	MessageID  string
	Body       []byte // header (with our Received field, metadata removed) and body
	// From a server: the message-level route and per-recipient state.
	Route    *envelope.Route
	RcptMeta map[string]envelope.Recipient
	// TraceParent is the W3C trace context; only taken from servers.
	TraceParent string
	Size        int64
}

// Acceptor makes a message durable; smtpd answers 250 only when it returns
// nil.
type Acceptor interface {
	Accept(ctx context.Context, m *Incoming) (queueID string, err error)
}

// ServerAllowance is how many bytes over MaxMessageBytes a session
// authenticated as a server of the organization may send: room for the
// Received fields and relay metadata (X-Pfrouter-*, Traceparent) the
// organization itself adds on the way, so a message accepted at the first
// server under the limit is not refused by the next (issue 10 item 2).
// Hop limit 30 × a Received field, the route and per-recipient metadata
// for a few hundred recipients fit with room to spare.
const ServerAllowance = 256 << 10

// Limits are the ingress limits a reload may change while the server runs
// (SetLimits); zero values take the defaults.
type Limits struct {
	MaxMessageBytes int64
	MaxRecipients   int
	MaxConnections  int
	// MaxConnectionsPerIP keeps one client address from taking every
	// connection slot.
	MaxConnectionsPerIP int
	// PerIPExempt are client addresses MaxConnectionsPerIP does not apply
	// to: the organization's own servers, whose relays are bounded by
	// their queue managers' workers and would otherwise be refused with
	// 421 under load whenever several servers share an address (one
	// host, or the loopback demo). Postfix exempts $mynetworks from its
	// per-client limit for the same reason. MaxConnections still applies.
	PerIPExempt []string
}

// Default limits.
const (
	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConnectionsPerIP <= 0 {
		l.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	return l
}

// Options configure a Server.
type Options struct {
	ServerName string // the pfrouter server name, used in Received
	Hostname   string // EHLO/banner name; default ServerName
	Limits
	// MaxLineLength is fixed at start: go-smtp applies it to every
	// connection's reader as the connection opens.
	MaxLineLength int
	ReadTimeout   time.Duration
	TLSConfig     *tls.Config
	Checker       Checker
	Acceptor      Acceptor
	Auth          Authenticator
	// Servers recognises peer servers by their TLS client certificate; a
	// session is a server's (relay metadata trusted) only through it.
	Servers ServerVerifier
	Logger  *slog.Logger
	// NewMessageID makes a Message-ID for mail that arrives without one.
	NewMessageID func() string
}

// Server is an SMTP listener of one pfrouter server.
type Server struct {
	smtp   *smtp.Server
	opts   Options
	limits atomic.Pointer[Limits]

	connMu sync.Mutex
	conns  int            // open connections
	perIP  map[string]int // open connections by client IP
}

// New builds a server.
func New(o Options) *Server {
	if o.Hostname == "" {
		o.Hostname = o.ServerName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	o.Limits = o.Limits.withDefaults()
	s := &Server{opts: o, perIP: map[string]int{}}
	s.SetLimits(o.Limits)
	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = o.Hostname
	// Message size and recipient count are enforced by the session from
	// the limits in force (SetLimits), not by go-smtp, whose copies cannot
	// change while connections read them.
	srv.MaxLineLength = o.MaxLineLength
	srv.ReadTimeout = o.ReadTimeout
	srv.WriteTimeout = time.Minute
	srv.TLSConfig = o.TLSConfig
	srv.EnableSMTPUTF8 = true
	srv.AllowInsecureAuth = o.TLSConfig == nil
	srv.ErrorLog = slogLogger{o.Logger}
	s.smtp = srv
	return s
}

// Serve accepts connections on l until Close.
func (s *Server) Serve(l net.Listener) error { return s.smtp.Serve(&limitListener{Listener: l, s: s}) }

// Close closes listeners and connections at once.
func (s *Server) Close() error { return s.smtp.Close() }

// Shutdown stops accepting and waits for sessions to end, or ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// SetLimits puts new limits in force (a config reload): new connections,
// transactions and messages see them; open ones keep their counts.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	s.limits.Store(&l)
}

// Limits are the limits in force.
func (s *Server) Limits() Limits { return *s.limits.Load() }

// limitListener refuses connections beyond MaxConnections, or beyond
// MaxConnectionsPerIP from one client address, with 421.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		if msg := l.s.admit(ip); msg != "" {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "421 4.7.0 %s %s\r\n", l.s.opts.Hostname, msg)
			c.Close()
			l.s.opts.Logger.Warn("smtp connection refused", "remote", c.RemoteAddr().String(), "reason", msg)
			continue
		}
		return &releaseConn{Conn: c, release: func() { l.s.release(ip) }}, nil
	}
}

// admit counts a new connection from ip, or says why it is refused.
func (s *Server) admit(ip string) string {
	lim := s.Limits()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch {
	case s.conns >= lim.MaxConnections:
		return "too many connections, try again later"
	case s.perIP[ip] >= lim.MaxConnectionsPerIP && !slices.Contains(lim.PerIPExempt, ip):
		return "too many connections from your address"
	}
	s.conns++
	s.perIP[ip]++
	return ""
}

func (s *Server) release(ip string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.conns--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func remoteIP(a net.Addr) string {
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

type releaseConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releaseConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c, remote: c.Conn().RemoteAddr().String()}, nil
}

type session struct {
	s         *Server
	conn      *smtp.Conn
	remote    string
	principal Principal
	from      string
	size      int64
	rcpts     []string
}

func smtpErr(code int, enh string, msg string) *smtp.SMTPError {
	var e smtp.EnhancedCode
	fmt.Sscanf(enh, "%d.%d.%d", &e[0], &e[1], &e[2])
	return &smtp.SMTPError{Code: code, EnhancedCode: e, Message: msg}
}

func (s *session) AuthMechanisms() []string {
	if s.s.opts.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || s.s.opts.Auth == nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtpErr(535, "5.7.8", "authorization identity must match the user")
		}
		_, tlsOn := s.conn.TLSConnectionState()
		p, err := s.s.opts.Auth.Authenticate(context.Background(), username, password, s.conn.Conn().RemoteAddr(), tlsOn)
		if err != nil {
			s.s.opts.Logger.Warn("smtp auth failed", "user", username, "remote", s.remote)
			return smtpErr(535, "5.7.8", "authentication credentials invalid")
		}
		s.principal = p
		return nil
	}), nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.identifyServer()
	size := int64(0)
	if opts != nil {
		size = opts.Size
	}
	if max := s.limit(); max > 0 && size > max {
		return tooLarge(size, max)
	}
	if s.principal.User != "" && s.s.opts.Checker != nil {
		if c := s.s.opts.Checker.CheckSender(s.principal.User, from); c != nil {
			s.s.opts.Logger.Warn("smtp sender refused", "user", s.principal.User, "from", from, "reason", c.Reason, "remote", s.remote)
			return smtpErr(553, c.Code, c.Reason)
		}
	}
	s.from, s.size = from, size
	return nil
}

// limit is the message size this session may send: the one in force,
// plus ServerAllowance for a server of the organization.
func (s *session) limit() int64 {
	max := s.s.Limits().MaxMessageBytes
	if max > 0 && s.principal.Server != "" {
		max += ServerAllowance
	}
	return max
}

func tooLarge(size, max int64) *smtp.SMTPError {
	return smtpErr(552, "5.3.4", fmt.Sprintf("message size %d exceeds the limit of %d bytes", size, max))
}

// identifyServer makes the session a server's when its TLS client
// certificate proves a server of the organization in the directory (S5).
// It is checked at each MAIL so it follows STARTTLS and directory changes.
func (s *session) identifyServer() {
	if s.s.opts.Servers == nil || s.principal.User != "" {
		return
	}
	s.principal.Server = ""
	if cs, ok := s.conn.TLSConnectionState(); ok {
		if srv, ok := s.s.opts.Servers.PeerServer(cs); ok {
			s.principal.Server = srv
		}
	}
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if max := s.s.Limits().MaxRecipients; max > 0 && len(s.rcpts) >= max {
		return smtpErr(452, "4.5.3", fmt.Sprintf("too many recipients (limit %d); send the rest in another transaction", max))
	}
	if s.principal.Server == "" && s.s.opts.Checker != nil {
		if c := s.s.opts.Checker.CheckRecipient(to, s.from, s.principal.User, s.size); c != nil {
			code := 550
			switch {
			case !c.Perm:
				code = 450
			case strings.HasPrefix(c.Code, "5.2.") || strings.HasPrefix(c.Code, "5.3."):
				code = 552
			case c.Code == "5.1.3":
				code = 501
			}
			s.s.opts.Logger.Info("smtp recipient refused", "rcpt", to, "from", s.from, "code", c.Code, "reason", c.Reason, "remote", s.remote)
			return smtpErr(code, c.Code, c.Reason)
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if len(s.rcpts) == 0 {
		return smtpErr(554, "5.5.1", "no valid recipients")
	}
	in, err := s.read(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := s.s.opts.Acceptor.Accept(ctx, in)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		s.s.opts.Logger.Error("smtp: queueing failed", "err", err, "from", s.from)
		return smtpErr(451, "4.3.0", "message not queued, try again later")
	}
	s.s.opts.Logger.Debug("smtp message queued", "queue_id", id, "from", s.from, "rcpts", len(s.rcpts), "size", in.Size)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

// countingReader counts the bytes of the message, enforces the size limit
// in force, and keeps the first read error, so a failure of the DATA stream
// (too long, connection lost) is told apart from a malformed header.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64 // 0: no limit
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.max > 0 && c.n > c.max {
		err = tooLarge(c.n, c.max)
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// readError maps a failure of the DATA stream to its reply. A line over
// max_line_length is the client's fault and will not get shorter on a
// retry: it is answered 500 5.5.2 (RFC 5321 4.5.3.1, "line too long"), a
// permanent refusal, not 451.
func readError(err error, maxLine int) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return smtpErr(500, "5.5.2", fmt.Sprintf("line too long (the limit is %d bytes per line)", maxLine))
	}
	return smtpErr(451, "4.3.0", "error reading message")
}

// read parses the header from the DATA stream, applies the trust rules for
// relay metadata, adds Received (and a Message-ID when missing), writes the
// rewritten header and then reads the body straight after it: the message
// is copied once, not read whole and then copied again behind a new header.
func (s *session) read(r io.Reader) (*Incoming, error) {
	cr := &countingReader{r: r, max: s.limit()}
	br := bufio.NewReader(cr)
	h, err := textproto.ReadHeader(br)
	if cr.err != nil {
		return nil, readError(cr.err, s.s.opts.MaxLineLength)
	}
	if err != nil {
		return nil, smtpErr(554, "5.6.0", "malformed message header: "+err.Error())
	}
	in := &Incoming{From: s.from, Recipients: append([]string(nil), s.rcpts...), Principal: s.principal, Remote: s.remote}
	if err := s.applyHeader(in, &h); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(s.bufferSize())
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return nil, smtpErr(554, "5.6.0", "cannot rewrite header")
	}
	if _, err := buf.ReadFrom(br); err != nil || cr.err != nil {
		if cr.err != nil {
			err = cr.err
		}
		return nil, readError(err, s.s.opts.MaxLineLength)
	}
	if max := s.limit(); max > 0 && cr.n > max {
		return nil, tooLarge(cr.n, max)
	}
	in.Body, in.Size = buf.Bytes(), cr.n
	return in, nil
}

// bufferSize guesses the rewritten message's size so the body is read
// into one allocation: the size MAIL announced (within the limit), else
// enough for most mail; larger messages grow the buffer as they arrive.
func (s *session) bufferSize() int {
	const headroom, guess = 1 << 10, 16 << 10
	size := s.size
	if max := s.limit(); max > 0 && size > max {
		size = max
	}
	if size <= 0 || size > 32<<20 {
		return guess + headroom
	}
	return int(size) + headroom
}

// applyHeader applies the trust rules for relay metadata to h and adds
// Received (and a Message-ID when missing).
func (s *session) applyHeader(in *Incoming, h *textproto.Header) error {
	trusted := s.principal.Server != ""
	if trusted {
		if v := h.Get(envelope.HeaderRoute); v != "" {
			r, err := envelope.DecodeRoute(v)
			if err != nil {
				return smtpErr(554, "5.6.0", err.Error())
			}
			in.Route = &r
		}
		in.RcptMeta = map[string]envelope.Recipient{}
		for _, v := range h.Values(envelope.HeaderRcpt) {
			rm, err := envelope.DecodeRcpt(v)
			if err != nil {
				return smtpErr(554, "5.6.0", err.Error())
			}
			in.RcptMeta[strings.ToLower(rm.Addr)] = rm
		}
		in.TraceParent = h.Get("Traceparent")
		h.Del(envelope.HeaderRoute)
		h.Del(envelope.HeaderRcpt)
	} else {
		// A client cannot inject routing state, trace context or anything
		// that looks like the organization's own metadata (S5).
		StripMetadata(h)
	}
	in.MessageID = strings.TrimSpace(h.Get("Message-Id"))
	if in.MessageID == "" && s.s.opts.NewMessageID != nil {
		in.MessageID = s.s.opts.NewMessageID()
		h.Set("Message-Id", in.MessageID)
	}
	h.Add("Received", s.received())
	return nil
}

// StripMetadata removes every header field a client must not supply: all
// X-Pfrouter-* fields (routing state, the admin "by", queue ids: whatever a
// later reader might take as ours) and the W3C trace context. Names are
// matched case-insensitively after the header parser unfolded and trimmed
// them, so folded or oddly cased variants go too.
func StripMetadata(h *textproto.Header) {
	for f := h.Fields(); f.Next(); {
		if envelope.IsInternalHeader(f.Key()) {
			f.Del()
		}
	}
}

func (s *session) received() string {
	with := "ESMTP"
	if _, ok := s.conn.TLSConnectionState(); ok {
		with += "S"
	}
	if s.principal.User != "" || s.principal.Server != "" {
		with += "A"
	}
	host := s.conn.Hostname()
	ip := s.remote
	if h, _, err := net.SplitHostPort(s.remote); err == nil {
		ip = h
	}
	var b strings.Builder
	// One line: go-message folds it when writing the header.
	fmt.Fprintf(&b, "from %s ([%s]) by %s (pfrouter) with %s", host, ip, s.s.opts.ServerName, with)
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, " for <%s>", s.rcpts[0])
	}
	fmt.Fprintf(&b, "; %s", time.Now().Format(time.RFC1123Z))
	return b.String()
}

func (s *session) Reset() {
	s.from, s.size, s.rcpts = "", 0, nil
}

func (s *session) Logout() error { return nil }

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Debug(fmt.Sprint(v...)) }

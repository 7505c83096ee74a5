package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
)

// FETCH of a referred folder is relayed verbatim (issue 13, performance):
// the command goes to the replica server as the client worded it, and its
// FETCH responses are copied to the client byte for byte, literals
// streamed, instead of being decoded by imapclient and encoded again. The
// sequence numbers need no mapping: the client's view of the folder is the
// remote session's view (remotesel.go), so a response about message n is
// about the client's message n. Responses about messages the client has
// not been told of yet are left out, as are any after an EXPUNGE; EXISTS
// and EXPUNGE are queued like any unsolicited update.

// gate shares a replica connection between imapclient (every command but
// FETCH) and the relay, which reads the responses itself. imapclient's
// reader goroutine reads through Read, which waits while the relay holds
// the connection.
type gate struct {
	net.Conn
	br *bufio.Reader

	mu      sync.Mutex
	cond    sync.Cond
	relay   bool // the relay holds the read side
	reading bool // imapclient's reader is inside br.Read
}

// relayReadBuf is the gate's read buffer: lines up to this size are
// parsed in place, and literals are copied out of it without another copy.
const relayReadBuf = 64 << 10

func newGate(c net.Conn) *gate {
	g := &gate{Conn: c, br: bufio.NewReaderSize(c, relayReadBuf)}
	g.cond.L = &g.mu
	return g
}

func (g *gate) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for g.relay {
			g.cond.Wait()
		}
		g.reading = true
		g.mu.Unlock()
		n, err := g.br.Read(p)
		g.mu.Lock()
		g.reading = false
		g.cond.Broadcast()
		if n > 0 || !g.relay || !isTimeout(err) {
			return n, err
		}
		// take interrupted this read: wait for the relay, then read on.
	}
}

// take gives the read side to the relay. imapclient's reader, blocked for
// data that is not coming (the replica server sends nothing between
// commands outside IDLE), is woken with a read deadline in the past; a
// TLS connection survives a read timeout.
func (g *gate) take() {
	g.mu.Lock()
	g.relay = true
	for g.reading {
		g.Conn.SetReadDeadline(time.Unix(1, 0))
		g.cond.Wait()
	}
	g.mu.Unlock()
}

// give hands the read side back to imapclient.
func (g *gate) give() {
	g.mu.Lock()
	g.relay = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errClientWrite marks a relay that failed writing to the client, not
// reading from the replica server.
var errClientWrite = errors.New("imapd: writing a relayed response to the client")

type clientWriter struct{ w io.Writer }

func (c clientWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errClientWrite, err)
	}
	return n, err
}

// errRelayProtocol is a replica server's answer the relay cannot follow:
// the connection is not usable any more.
var errRelayProtocol = errors.New("imapd: replica server broke the IMAP protocol")

// relayRaw runs a FETCH on the remote session and copies its responses to
// the client. Errors from the replica server's tagged answer are
// *imap.Error; others mean the connection is broken.
func (s *session) relayRaw(w *imapserver.FetchWriter, numSet imap.NumSet, items string) error {
	r := s.rsel
	rc := r.rc
	rc.tag++
	tag := "R" + strconv.FormatUint(rc.tag, 10)
	set := numSet.String()
	if imap.IsSearchRes(numSet) {
		set = "$"
	}
	cmd := tag + " FETCH " + set + " " + items + "\r\n"
	if _, uid := numSet.(imap.UIDSet); uid {
		cmd = tag + " UID FETCH " + set + " " + items + "\r\n"
	}

	g := rc.gate
	g.take()
	defer g.give()
	g.SetDeadline(time.Now().Add(remoteOpWait))
	defer g.SetDeadline(time.Time{})
	if _, err := io.WriteString(g.Conn, cmd); err != nil {
		return err
	}
	tail := make([]byte, 0, 32)
	expunged := false
	// One writer for all the responses: the client's connection is this
	// command's until it ends, and its lock and deadlines are taken once.
	var rw *imapserver.RawResponseWriter
	defer func() {
		if rw != nil {
			rw.Close()
		}
	}()
	relay := func() io.Writer {
		if rw == nil {
			rw = w.RawResponse()
		}
		return clientWriter{rw}
	}
	for {
		line, full, err := nextPiece(g.br)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			answer := taggedError(line[len(tag)+1:])
			if !full {
				if _, err := finishLine(g.br, line, full, nil, &tail); err != nil {
					return err
				}
			}
			if rw != nil {
				err, rw = rw.Close(), nil
				if err != nil {
					return fmt.Errorf("%w: %w", errClientWrite, err)
				}
			}
			return answer
		}
		num, kind, ok := untagged(line)
		if !ok {
			return fmt.Errorf("%w: %q", errRelayProtocol, truncate(line))
		}
		var out io.Writer // nil: read and drop
		switch kind {
		case "FETCH":
			if num > 0 && num <= r.n && !expunged {
				out = relay()
			}
		case "EXISTS":
			r.push(remoteEvent{kind: evExists, num: num})
		case "EXPUNGE":
			r.push(remoteEvent{kind: evExpunge, num: num})
			expunged = true
		case "FLAGS", "OK":
			// New keywords: FLAGS and PERMANENTFLAGS (RFC 3501 7.2.6)
			// must reach the client before a FETCH that shows them.
			if kind == "FLAGS" || bytes.Contains(line, []byte("[PERMANENTFLAGS ")) {
				out = relay()
			}
		case "BYE":
			return fmt.Errorf("imapd: replica server ended the session: %q", truncate(line))
		}
		if err := relayResponse(g.br, line, full, out, &tail); err != nil {
			return err
		}
	}
}

// nextPiece reads the start of a line: all of it (full) or as much as the
// buffer holds. The slice is valid until the next read.
func nextPiece(br *bufio.Reader) ([]byte, bool, error) {
	p, err := br.ReadSlice('\n')
	switch {
	case err == nil:
		return p, true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return p, false, nil
	case errors.Is(err, io.EOF):
		return nil, false, io.ErrUnexpectedEOF
	default:
		return nil, false, err
	}
}

// finishLine passes a line begun by piece to out (nil drops it) and
// returns the size of the literal announced at its end, or -1. tail keeps
// the line's last bytes, where the literal's size is.
func finishLine(br *bufio.Reader, piece []byte, full bool, out io.Writer, tail *[]byte) (int64, error) {
	*tail = (*tail)[:0]
	for {
		if out != nil {
			if _, err := out.Write(piece); err != nil {
				return 0, err
			}
		}
		if c := cap(*tail); len(piece) >= c {
			*tail = append((*tail)[:0], piece[len(piece)-c:]...)
		} else {
			if over := len(*tail) + len(piece) - c; over > 0 {
				*tail = append((*tail)[:0], (*tail)[over:]...)
			}
			*tail = append(*tail, piece...)
		}
		if full {
			return literalSize(*tail)
		}
		var err error
		if piece, full, err = nextPiece(br); err != nil {
			return 0, err
		}
	}
}

// literalSize reads "{n}\r\n" at the end of a line.
func literalSize(line []byte) (int64, error) {
	line = bytes.TrimSuffix(line, []byte("\r\n"))
	if len(line) == 0 || line[len(line)-1] != '}' {
		return -1, nil
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return -1, nil
	}
	n, err := strconv.ParseInt(string(line[open+1:len(line)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad literal size %q", errRelayProtocol, line[open:])
	}
	return n, nil
}

// relayResponse passes one response, begun by piece, to out (nil drops
// it): its lines and the literals between them, streamed.
func relayResponse(br *bufio.Reader, piece []byte, full bool, out io.Writer, tail *[]byte) error {
	for {
		n, err := finishLine(br, piece, full, out, tail)
		if err != nil || n < 0 {
			return err
		}
		if err := copyN(out, br, n); err != nil {
			return err
		}
		if piece, full, err = nextPiece(br); err != nil {
			return err
		}
	}
}

// copyN copies n bytes from br to out (nil drops them) straight out of
// br's buffer.
func copyN(out io.Writer, br *bufio.Reader, n int64) error {
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := int(min(int64(br.Buffered()), n))
		p, _ := br.Peek(k)
		if out != nil {
			if _, err := out.Write(p); err != nil {
				return err
			}
		}
		br.Discard(k)
		n -= int64(k)
	}
	return nil
}

// untagged parses "* [n ]KIND" at the start of a response line.
func untagged(line []byte) (num uint32, kind string, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return 0, "", false
	}
	if i := bytes.IndexByte(rest, ' '); i > 0 && rest[0] >= '0' && rest[0] <= '9' {
		n, err := strconv.ParseUint(string(rest[:i]), 10, 32)
		if err != nil {
			return 0, "", false
		}
		num, rest = uint32(n), rest[i+1:]
	}
	end := bytes.IndexAny(rest, " \r\n")
	if end < 0 {
		end = len(rest)
	}
	return num, strings.ToUpper(string(rest[:end])), true
}

// taggedError reads a tagged status ("OK ...", "NO [CODE] text"): nil for
// OK, else the replica server's answer as an *imap.Error for the client.
func taggedError(status []byte) error {
	s := strings.TrimRight(string(status), "\r\n")
	typ, rest, _ := strings.Cut(s, " ")
	e := &imap.Error{Type: imap.StatusResponseType(strings.ToUpper(typ))}
	switch e.Type {
	case imap.StatusResponseTypeOK:
		return nil
	case imap.StatusResponseTypeNo, imap.StatusResponseTypeBad:
	default:
		return fmt.Errorf("%w: tagged %q", errRelayProtocol, typ)
	}
	if strings.HasPrefix(rest, "[") {
		if end := strings.IndexByte(rest, ']'); end > 0 {
			code := rest[1:end]
			if sp := strings.IndexByte(code, ' '); sp >= 0 {
				code = code[:sp]
			}
			e.Code, rest = imap.ResponseCode(code), strings.TrimPrefix(rest[end+1:], " ")
		}
	}
	e.Text = rest
	return e
}

func truncate(line []byte) string {
	if len(line) > 80 {
		line = line[:80]
	}
	return strings.TrimRight(string(line), "\r\n")
}

package pop3d

import (
	"bytes"
	"io"
)

// msgWriter turns a stored message into the body of a multi-line response
// (RFC 1939 §3): every line end becomes CRLF (a bare LF is taken as a line
// end; a bare CR inside a line is kept, one at the very end is taken as a
// line end), a line starting with "." gets one more "." when stuff is set,
// and a message not ending in a line end gets a CRLF. With topLines >= 0 it
// stops after the header, the blank line and that many body lines (TOP).
//
// It does not write the terminating ".CRLF"; the caller does, after Finish.
type msgWriter struct {
	w     io.Writer
	stuff bool

	// top state: lines < 0 means no limit.
	topLines  int
	inBody    bool
	done      bool
	lineEmpty bool

	atLineStart bool
	pendingCR   bool
	n           int64 // octets written, stuffing included
	stuffed     int64 // stuffing dots written
	err         error
}

func newMsgWriter(w io.Writer, stuff bool, topLines int) *msgWriter {
	return &msgWriter{w: w, stuff: stuff, topLines: topLines, atLineStart: true, lineEmpty: true}
}

var (
	crlf = []byte("\r\n")
	cr   = []byte("\r")
	dot  = []byte(".")
)

func (m *msgWriter) put(p []byte) {
	if m.err != nil || len(p) == 0 {
		return
	}
	n, err := m.w.Write(p)
	m.n += int64(n)
	m.err = err
}

// endLine writes a CRLF and advances the TOP line count.
func (m *msgWriter) endLine() {
	m.put(crlf)
	if m.topLines >= 0 {
		if !m.inBody {
			if m.lineEmpty {
				m.inBody = true
				m.done = m.topLines == 0
			}
		} else {
			m.topLines--
			m.done = m.topLines == 0
		}
	}
	m.atLineStart = true
	m.lineEmpty = true
}

// Write consumes p entirely; once a TOP limit is reached (Done) the rest
// is swallowed.
func (m *msgWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && !m.done && m.err == nil {
		if m.pendingCR {
			m.pendingCR = false
			if p[0] == '\n' {
				m.endLine()
				p = p[1:]
				continue
			}
			m.put(cr)
			m.atLineStart, m.lineEmpty = false, false
		}
		if m.atLineStart && m.stuff && p[0] == '.' {
			m.put(dot)
			m.stuffed++
		}
		j := bytes.IndexAny(p, "\r\n")
		if j < 0 {
			m.put(p)
			m.atLineStart, m.lineEmpty = false, false
			break
		}
		if j > 0 {
			m.put(p[:j])
			m.atLineStart, m.lineEmpty = false, false
		}
		if p[j] == '\n' {
			m.endLine()
		} else {
			m.pendingCR = true
		}
		p = p[j+1:]
	}
	return total, m.err
}

// Done reports that the TOP limit was reached; reading more is pointless.
func (m *msgWriter) Done() bool { return m.done }

// Finish terminates the last line if needed.
func (m *msgWriter) Finish() error {
	if m.done {
		return m.err
	}
	if m.pendingCR {
		m.pendingCR = false
		m.endLine()
	}
	if !m.atLineStart {
		m.endLine()
	}
	return m.err
}

// TransmittedSize returns the size this package's LIST/STAT convention
// expects in MessageInfo.Size for the message r: the octets sent after CRLF
// normalisation (including a final CRLF added to an unterminated last line)
// and before byte-stuffing.
func TransmittedSize(r io.Reader) (int64, error) {
	m := newMsgWriter(io.Discard, false, -1)
	if _, err := io.Copy(m, r); err != nil {
		return 0, err
	}
	if err := m.Finish(); err != nil {
		return 0, err
	}
	return m.n, nil
}

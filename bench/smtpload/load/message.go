package load

import (
	"bytes"
	"fmt"
	"strings"
)

// message builds the test messages of one run: a header that differs per
// message (a unique Message-Id, so no server deduplicates the posts) and a
// body shared by all, sized so that header and body together are Size bytes.
type message struct {
	from, to string
	run      string
	body     []byte // CRLF lines, dot-safe, no final dot
}

const headerTemplate = "From: <%s>\r\nTo: <%s>\r\nSubject: smtpload %s %d/%d\r\nMessage-Id: <smtpload.%s.%d.%d@bench.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"

func newMessage(size int, from, to, run string) *message {
	m := &message{from: from, to: to, run: run}
	// A representative header length; the body fills up to size.
	hlen := len(m.header(1<<20, 1<<20))
	n := max(size-hlen, 2)
	var b bytes.Buffer
	b.Grow(n)
	line := strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789 ", 2)[:76] + "\r\n"
	for b.Len()+len(line) <= n {
		b.WriteString(line)
	}
	if rest := n - b.Len(); rest >= 2 {
		b.WriteString(line[:rest-2])
		b.WriteString("\r\n")
	}
	m.body = b.Bytes()
	return m
}

// header is message seq of worker w.
func (m *message) header(w, seq int) []byte {
	return fmt.Appendf(nil, headerTemplate, m.from, m.to, m.run, w, seq, m.run, w, seq)
}

package load

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Message is the shape bench/smtpload sends (same header fields, same
// filler body), so servers populated by APPEND and by SMTP hold
// comparable messages.
type Message struct {
	to, run string
	body    []byte
}

// NewMessage prepares messages of about size bytes to user.
func NewMessage(size int, user string) *Message {
	m := &Message{to: user, run: fmt.Sprintf("imapload-%d", time.Now().UnixNano())}
	n := max(size-len(m.header(1<<20)), 2)
	line := strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789 ", 2)[:76] + "\r\n"
	var b bytes.Buffer
	for b.Len()+len(line) <= n {
		b.WriteString(line)
	}
	if rest := n - b.Len(); rest >= 2 {
		b.WriteString(line[:rest-2] + "\r\n")
	}
	m.body = b.Bytes()
	return m
}

func (m *Message) header(seq int) []byte {
	return fmt.Appendf(nil, "From: <load@example.net>\r\nTo: <%s>\r\nSubject: %s %d\r\nMessage-Id: <%s.%d@bench.invalid>\r\n"+
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		m.to, m.run, seq, m.run, seq)
}

// Build is message number seq: a unique header, the shared body.
func (m *Message) Build(seq int) []byte { return append(m.header(seq), m.body...) }

package imapserver

// pfrouter addition (FORK.md): what a session needs to relay another IMAP
// server's FETCH responses to its client verbatim (public folder
// referrals): the FETCH request as the client made it, and a writer for
// responses given as wire bytes.

import (
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Request returns the FETCH data items of options as a client sends them,
// parenthesized, with the forms this command's client used (RFC822 and
// friends, BODY next to BODYSTRUCTURE), so that a server answering it
// writes the responses this client expects. ok is false for a request it
// cannot write as one line (a header field name that needs a literal).
func (cmd *FetchWriter) Request(options *imap.FetchOptions) (items string, ok bool) {
	var b strings.Builder
	b.WriteByte('(')
	item := func(s string) {
		if b.Len() > 1 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	if options.UID {
		item("UID")
	}
	if options.Flags {
		item("FLAGS")
	}
	if options.InternalDate {
		item("INTERNALDATE")
	}
	if options.RFC822Size {
		item("RFC822.SIZE")
	}
	if options.Envelope {
		item("ENVELOPE")
	}
	if options.ModSeq {
		item("MODSEQ")
	}
	if bs := options.BodyStructure; bs != nil {
		forms := cmd.options.bodyStructure
		if !forms.nonExtended && !forms.extended {
			forms.extended, forms.nonExtended = bs.Extended, !bs.Extended
		}
		if forms.nonExtended {
			item("BODY")
		}
		if forms.extended {
			item("BODYSTRUCTURE")
		}
	}
	for _, sec := range options.BodySection {
		if obs, isObs := cmd.options.obsolete[sec]; isObs {
			item(obs)
			continue
		}
		s, ok := requestBodySection(sec)
		if !ok {
			return "", false
		}
		item(s)
	}
	for _, sec := range options.BinarySection {
		name := "BINARY"
		if sec.Peek {
			name = "BINARY.PEEK"
		}
		item(name + "[" + partString(sec.Part) + "]" + partialString(sec.Partial))
	}
	for _, sec := range options.BinarySectionSize {
		item("BINARY.SIZE[" + partString(sec.Part) + "]")
	}
	b.WriteByte(')')
	if options.ChangedSince > 0 {
		b.WriteString(" (CHANGEDSINCE " + strconv.FormatUint(options.ChangedSince, 10) + ")")
	}
	return b.String(), true
}

func requestBodySection(sec *imap.FetchItemBodySection) (string, bool) {
	var b strings.Builder
	b.WriteString("BODY")
	if sec.Peek {
		b.WriteString(".PEEK")
	}
	b.WriteByte('[')
	b.WriteString(partString(sec.Part))
	if sec.Specifier != imap.PartSpecifierNone {
		if len(sec.Part) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(sec.Specifier))
		names := sec.HeaderFields
		if len(names) > 0 {
			b.WriteString(".FIELDS")
		} else if names = sec.HeaderFieldsNot; len(names) > 0 {
			b.WriteString(".FIELDS.NOT")
		}
		if len(names) > 0 {
			b.WriteString(" (")
			for i, name := range names {
				if i > 0 {
					b.WriteByte(' ')
				}
				s, ok := astring(name)
				if !ok {
					return "", false
				}
				b.WriteString(s)
			}
			b.WriteByte(')')
		}
	}
	b.WriteByte(']')
	b.WriteString(partialString(sec.Partial))
	return b.String(), true
}

func partString(part []int) string {
	s := make([]string, len(part))
	for i, p := range part {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ".")
}

func partialString(p *imap.SectionPartial) string {
	if p == nil {
		return ""
	}
	return "<" + strconv.FormatInt(p.Offset, 10) + "." + strconv.FormatInt(p.Size, 10) + ">"
}

// astring writes s as an atom or a quoted string; false if it needs a
// literal.
func astring(s string) (string, bool) {
	atom := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c >= 0x7f:
			return "", false
		case strings.IndexByte(`(){ %*"\]`, c) >= 0:
			atom = false
		}
	}
	if atom {
		return s, true
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, true
}

// RawResponse writes responses given as wire bytes, untagged and complete
// (literals included, CRLF last): the caller vouches for their syntax and
// for their sequence numbers meaning the same in this session. Close must
// be called; no other response is written meanwhile.
func (cmd *FetchWriter) RawResponse() *RawResponseWriter {
	enc := newResponseEncoder(cmd.conn)
	cmd.conn.setWriteTimeout(literalWriteTimeout)
	return &RawResponseWriter{enc: enc}
}

// RawResponseWriter is a response written as bytes (FetchWriter.RawResponse).
type RawResponseWriter struct {
	enc *responseEncoder
}

func (w *RawResponseWriter) Write(p []byte) (int, error) {
	return w.enc.conn.bw.Write(p)
}

// Close flushes the responses and lets others be written.
func (w *RawResponseWriter) Close() error {
	err := w.enc.conn.bw.Flush()
	w.enc.end()
	return err
}

package imapfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what a client may send before it is authenticated: enough for
// any user name and password, small enough that a stranger cannot make us
// buffer much.
const (
	// maxLine is 64 KiB as in Dovecot: imaptest's "id" sends a 30 KB ID.
	maxLine     = 64 << 10
	maxLiteral  = 8192
	maxLiterals = 8
)

// command is one parsed client command.
type command struct {
	Tag  string
	Name string   // upper-case
	Args []string // astrings (atoms, quoted strings, literals); "(" and ")" as tokens
}

// errFatal errors end the session: the stream can no longer be trusted to
// be in step (an overlong line, a non-synchronizing literal we refused).
var errLineTooLong = errors.New("line too long")

type fatalError struct{ msg string }

func (e *fatalError) Error() string { return e.msg }

// badCommand is answered with BAD and the session goes on. tag is "" when
// the tag itself could not be read (the answer is then untagged).
type badCommand struct {
	tag, msg string
}

func (e *badCommand) Error() string { return e.msg }

// readLine reads one line without its CRLF (a bare LF is accepted).
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxLine+2 {
			return "", errLineTooLong
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	s := strings.TrimSuffix(string(buf), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// literalSuffix finds a "{n}" or "{n+}" literal marker ending a line.
func literalSuffix(line string) (text string, n int, sync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return "", 0, false, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return "", 0, false, false
	}
	num := line[open+1 : len(line)-1]
	sync = true
	if strings.HasSuffix(num, "+") {
		num, sync = num[:len(num)-1], false
	}
	if num == "" || len(num) > 10 || strings.TrimLeft(num, "0123456789") != "" {
		return "", 0, false, false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return "", 0, false, false
	}
	return line[:open], int(v), sync, true
}

// readCommand reads one command with its literals. cont is called before
// each synchronizing literal (it sends the "+" continuation).
func readCommand(r *bufio.Reader, cont func() error) (command, error) {
	var texts, lits []string
	for {
		line, err := readLine(r)
		if err != nil {
			return command{}, err
		}
		text, n, sync, ok := literalSuffix(line)
		if !ok {
			texts = append(texts, line)
			break
		}
		if n > maxLiteral || len(lits) >= maxLiterals {
			if !sync {
				return command{}, &fatalError{"literal too large"}
			}
			// The client waits for "+" and will not send it: answer now.
			return command{}, &badCommand{tag: tagOf(texts, text), msg: "literal too large"}
		}
		if sync {
			if err := cont(); err != nil {
				return command{}, err
			}
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return command{}, err
		}
		texts, lits = append(texts, text), append(lits, string(buf))
	}
	return parseCommand(texts, lits)
}

// tagOf is the tag of a command being read, for answering a refused
// literal, or "".
func tagOf(texts []string, cur string) string {
	first := cur
	if len(texts) > 0 {
		first = texts[0]
	}
	tag, _, _ := strings.Cut(first, " ")
	if validTag(tag) {
		return tag
	}
	return ""
}

func validTag(tag string) bool {
	if tag == "" {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if !isAtomChar(tag[i]) || tag[i] == '+' {
			return false
		}
	}
	return true
}

// isAtomChar: ASTRING-CHAR of RFC 9051 (atom chars and "]").
func isAtomChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\':
		return false
	}
	return true
}

// scanner walks the text pieces of a command; after piece i comes
// literal i.
type scanner struct {
	texts, lits []string
	i, pos      int
}

func (s *scanner) cur() string { return s.texts[s.i] }

// parseCommand splits text pieces and literals into tag, name and args.
func parseCommand(texts, lits []string) (command, error) {
	s := &scanner{texts: texts, lits: lits}
	first := s.cur()
	tag, rest, _ := strings.Cut(first, " ")
	if !validTag(tag) {
		return command{}, &badCommand{msg: "missing or invalid tag"}
	}
	name, _, _ := strings.Cut(rest, " ")
	if name == "" {
		return command{}, &badCommand{tag: tag, msg: "missing command"}
	}
	for i := 0; i < len(name); i++ {
		if !isAtomChar(name[i]) {
			return command{}, &badCommand{tag: tag, msg: "invalid command name"}
		}
	}
	s.pos = len(tag) + 1 + len(name)
	if s.pos > len(first) {
		s.pos = len(first)
	}
	cmd := command{Tag: tag, Name: strings.ToUpper(name)}
	args, err := s.args()
	if err != nil {
		return command{}, &badCommand{tag: tag, msg: err.Error()}
	}
	cmd.Args = args
	return cmd, nil
}

func (s *scanner) args() ([]string, error) {
	var out []string
	for {
		text := s.cur()
		if s.pos == len(text) {
			if s.i >= len(s.lits) {
				return out, nil
			}
			if s.pos > 0 && text[s.pos-1] != ' ' && text[s.pos-1] != '(' {
				return nil, fmt.Errorf("literal must start an argument")
			}
			out = append(out, s.lits[s.i])
			s.i, s.pos = s.i+1, 0
			if t := s.cur(); t != "" && t[0] != ' ' && t[0] != ')' {
				return nil, fmt.Errorf("missing space after literal")
			}
			continue
		}
		c := text[s.pos]
		switch {
		case c == ' ':
			s.pos++
			if s.pos < len(text) && text[s.pos] == ' ' {
				return nil, fmt.Errorf("extra space")
			}
			continue
		case c == '(' || c == ')':
			out = append(out, string(c))
			s.pos++
		case c == '"':
			q, err := s.quoted()
			if err != nil {
				return nil, err
			}
			out = append(out, q)
		case isAtomChar(c):
			start := s.pos
			for s.pos < len(text) && isAtomChar(text[s.pos]) {
				s.pos++
			}
			out = append(out, text[start:s.pos])
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
		if err := s.separator(); err != nil {
			return nil, err
		}
	}
}

// separator checks what follows a token: a space, ")", "(" after "(", or
// the end of the piece.
func (s *scanner) separator() error {
	text := s.cur()
	if s.pos == len(text) {
		return nil
	}
	switch text[s.pos] {
	case ' ', ')':
		return nil
	}
	if s.pos > 0 && text[s.pos-1] == '(' {
		return nil
	}
	return fmt.Errorf("missing space between arguments")
}

// quoted reads a quoted string with \" and \\ escapes.
func (s *scanner) quoted() (string, error) {
	text := s.cur()
	var b strings.Builder
	for i := s.pos + 1; i < len(text); i++ {
		switch c := text[i]; c {
		case '"':
			s.pos = i + 1
			return b.String(), nil
		case '\\':
			i++
			if i >= len(text) || (text[i] != '"' && text[i] != '\\') {
				return "", fmt.Errorf("bad escape in quoted string")
			}
			b.WriteByte(text[i])
		case '\r', '\n', 0:
			return "", fmt.Errorf("bad character in quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated quoted string")
}

package pop3d

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// command is one parsed client command line.
type command struct {
	Name string   // keyword, upper-cased
	Args []string // space-separated arguments
	Rest string   // everything after the keyword and one space, verbatim (PASS)
}

var errBadSyntax = errors.New("pop3d: malformed command")

// maxKeyword bounds the keyword. RFC 1939 keywords are 3–4 characters;
// extensions (RFC 2449) may be longer, so allow some slack.
const maxKeyword = 16

// parseCommand splits a command line (without its CRLF) into keyword and
// arguments (RFC 1939 §3): the keyword is ASCII letters, case-insensitive;
// arguments are separated by spaces. PASS keeps spaces in Rest because
// passwords may contain them. NUL and other control characters except tab
// are refused.
func parseCommand(line []byte) (command, error) {
	if len(line) == 0 {
		return command{}, errBadSyntax
	}
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return command{}, errBadSyntax
		}
	}
	kw, rest, hasRest := bytes.Cut(line, []byte(" "))
	if len(kw) == 0 || len(kw) > maxKeyword {
		return command{}, errBadSyntax
	}
	for _, c := range kw {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return command{}, errBadSyntax
		}
	}
	cmd := command{Name: strings.ToUpper(string(kw))}
	if hasRest {
		cmd.Rest = string(rest)
		cmd.Args = strings.Fields(cmd.Rest)
	}
	return cmd, nil
}

// parseNumber parses a decimal message number or line count: digits only,
// no sign, bounded so it cannot overflow.
func parseNumber(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

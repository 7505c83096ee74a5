package imapfront

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func parseAll(in string) (command, error) {
	return readCommand(bufio.NewReader(strings.NewReader(in)), func() error { return nil })
}

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		in   string
		want command
	}{
		{"a1 noop\r\n", command{"a1", "NOOP", nil}},
		{"a1 LOGIN alice secret\r\n", command{"a1", "LOGIN", []string{"alice", "secret"}}},
		{`a1 LOGIN "al ice" "p\"w\\d"` + "\r\n", command{"a1", "LOGIN", []string{"al ice", `p"w\d`}}},
		{"a1 LOGIN {5}\r\nal ce {3+}\r\n{}x\r\n", command{"a1", "LOGIN", []string{"al ce", "{}x"}}},
		{"a1 LOGIN {0}\r\n \"\"\r\n", command{"a1", "LOGIN", []string{"", ""}}},
		{`x ID ("name" "c")` + "\n", command{"x", "ID", []string{"(", "name", "c", ")"}}},
		{"x ID NIL\r\n", command{"x", "ID", []string{"NIL"}}},
		{"x AUTHENTICATE PLAIN =\r\n", command{"x", "AUTHENTICATE", []string{"PLAIN", "="}}},
	} {
		got, err := parseAll(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"\r\n", "a1\r\n", "+a NOOP\r\n", "a1 LOGIN \"x\r\n", "a1 LOGIN \"x\"y\r\n", "a1 LOGIN  x\r\n",
		"a1 LOGIN x{3}\r\nabc\r\n", "a1 LOGIN {3}\r\nabcd\r\n", `a1 LOGIN "a\b"` + "\r\n", "a\x01 NOOP\r\n",
		"a1 LOGIN {99999}\r\n",
	} {
		_, err := parseAll(in)
		var bad *badCommand
		if !errors.As(err, &bad) {
			t.Errorf("%q: err = %v, want a BAD", in, err)
		}
	}
	if _, err := parseAll("a1 LOGIN {99999+}\r\n"); !errors.As(err, new(*fatalError)) {
		t.Errorf("oversized non-synchronizing literal: %v", err)
	}
	if _, err := parseAll("a1 LOGIN " + strings.Repeat("x", maxLine+10) + "\r\n"); !errors.Is(err, errLineTooLong) {
		t.Errorf("long line: %v", err)
	}
}

// The command parser never panics or hangs; what it accepts survives a
// round trip through quote().
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a1 LOGIN alice secret\r\n", `a1 LOGIN "a\"b" {3}` + "\r\nxyz\r\n", "a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n",
		"x ID (\"name\" NIL)\r\n", "a1 LOGIN {3+}\r\nabc {0}\r\n\r\n", "\r\n", "}{5}\r\n", "a {", "a b {1}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for i := 0; i < 100; i++ {
			cmd, err := readCommand(r, func() error { return nil })
			var bad *badCommand
			if errors.As(err, &bad) {
				continue
			}
			if err != nil {
				return
			}
			if !validTag(cmd.Tag) || cmd.Name == "" || cmd.Name != strings.ToUpper(cmd.Name) {
				t.Fatalf("bad parse %+v", cmd)
			}
			var b strings.Builder
			b.WriteString(cmd.Tag + " " + cmd.Name)
			for _, a := range cmd.Args {
				b.WriteString(" ")
				if a == "(" || a == ")" {
					b.WriteString(a)
					continue
				}
				b.WriteString(literalOrQuote(a))
			}
			b.WriteString("\r\n")
			again, err := parseAll(b.String())
			if err != nil {
				t.Fatalf("re-parse of %q: %v", b.String(), err)
			}
			if !reflect.DeepEqual(again, cmd) {
				t.Fatalf("round trip: %+v -> %q -> %+v", cmd, b.String(), again)
			}
		}
	})
}

// literalOrQuote renders an argument so it parses back to itself: quoted
// when it can be, else a non-synchronizing literal.
func literalOrQuote(s string) string {
	if strings.ContainsAny(s, "\r\n\x00") || len(s) > 1024 {
		return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

package pop3d

import (
	"bufio"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in   string
		name string
		args []string
		rest string
		bad  bool
	}{
		{in: "stat", name: "STAT"},
		{in: "LIST 3", name: "LIST", args: []string{"3"}, rest: "3"},
		{in: "TOP 1 10", name: "TOP", args: []string{"1", "10"}, rest: "1 10"},
		{in: "PASS two words ", name: "PASS", args: []string{"two", "words"}, rest: "two words "},
		{in: "", bad: true},
		{in: " STAT", bad: true},
		{in: "ST4T", bad: true},
		{in: "USER a\x00b", bad: true},
		{in: strings.Repeat("A", maxKeyword+1), bad: true},
	}
	for _, c := range cases {
		got, err := parseCommand([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("parseCommand(%q) = %+v, want error", c.in, got)
			}
			continue
		}
		if err != nil || got.Name != c.name || !slices.Equal(got.Args, c.args) || got.Rest != c.rest {
			t.Errorf("parseCommand(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "007": 7, "123456789": 123456789} {
		if n, ok := parseNumber(in); !ok || n != want {
			t.Errorf("parseNumber(%q) = %d, %v", in, n, ok)
		}
	}
	for _, in := range []string{"", "-1", "+1", "1x", "1234567890", "99999999999999999999"} {
		if _, ok := parseNumber(in); ok {
			t.Errorf("parseNumber(%q) accepted", in)
		}
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 600)
	r := bufio.NewReaderSize(strings.NewReader("a\r\nb\n"+long+"\r\nc\r\n"), 16)
	for _, want := range []string{"a", "b"} {
		if got, err := readLine(r, 512); err != nil || string(got) != want {
			t.Fatalf("readLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readLine(r, 512); !errors.Is(err, errLineTooLong) {
		t.Fatalf("overlong line: err = %v", err)
	}
	if got, err := readLine(r, 512); err != nil || string(got) != "c" {
		t.Fatalf("after overlong line: %q, %v", got, err)
	}
	// Exactly at the limit (including CRLF) is fine.
	r = bufio.NewReader(strings.NewReader(strings.Repeat("y", 510) + "\r\n"))
	if got, err := readLine(r, 512); err != nil || len(got) != 510 {
		t.Fatalf("line at limit: len %d, %v", len(got), err)
	}
	r = bufio.NewReader(strings.NewReader(strings.Repeat("z", maxDiscard+10)))
	if _, err := readLine(r, 512); !errors.Is(err, errGarbage) {
		t.Fatalf("endless line: err = %v", err)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"STAT", "LIST 1", "TOP 1 2", "PASS a b", "", " ", "\x00", "AUTH PLAIN =", "uidl   3  "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if cmd.Name == "" || strings.ToUpper(cmd.Name) != cmd.Name || len(cmd.Name) > maxKeyword {
			t.Fatalf("bad keyword %q from %q", cmd.Name, line)
		}
		for _, r := range cmd.Name {
			if !unicode.IsUpper(r) || r > unicode.MaxASCII {
				t.Fatalf("non-letter keyword %q", cmd.Name)
			}
		}
		if !strings.EqualFold(string(line), cmd.Name) && !strings.EqualFold(string(line), cmd.Name+" "+cmd.Rest) {
			t.Fatalf("lossy parse: %q -> %+v", line, cmd)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.ContainsAny(a, " ") {
				t.Fatalf("bad arg %q", a)
			}
		}
	})
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decode parses YAML strictly (unknown keys are errors) and records the line
// of every field path so validation errors can name it.
func decode(data []byte, name string) (*Org, *lineIndex, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	lines := &lineIndex{m: map[string]int{}}
	if len(root.Content) > 0 {
		lines.walk(root.Content[0], "")
	}
	org := &Org{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(org); err != nil {
		if errors.Is(err, errEOF) || err.Error() == "EOF" {
			return nil, nil, fmt.Errorf("%s: the organization file is empty", name)
		}
		return nil, nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return org, lines, nil
}

var errEOF = errors.New("EOF")

// lineIndex maps field paths like "folders[3].replicas" to source lines.
type lineIndex struct{ m map[string]int }

func (l *lineIndex) walk(n *yaml.Node, path string) {
	// Aliases are not followed: an anchor may contain itself, and the
	// decoder reports that; errors inside aliased content point at the
	// alias's key instead.
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			l.m[p] = k.Line
			l.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			l.m[p] = c.Line
			l.walk(c, p)
		}
	}
}

func (l *lineIndex) has(path string) bool {
	if l == nil {
		return false
	}
	_, ok := l.m[path]
	return ok
}

// line finds the line of path or of its nearest ancestor present.
func (l *lineIndex) line(path string) int {
	if l == nil {
		return 0
	}
	for p := path; p != ""; {
		if n, ok := l.m[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// FieldError is one validation problem.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in source order.
type Errors []FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

func (es Errors) withLines(file string, l *lineIndex) Errors {
	for i := range es {
		es[i].File = file
		es[i].Line = l.line(es[i].Field)
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}

// Duration is a time.Duration written as in Go ("48h", "90m") or in whole
// days ("2d"); a bare 0 is zero.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration accepts Go durations plus a whole-day "Nd" form.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 48h, 90m or 2d)", s)
	}
	return v, nil
}

// ByteSize is a size written as bytes or with a unit (KB, MB, GB, binary
// multiples as in Exchange's limits: 10MB = 10,485,760 bytes).
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize parses "10MB", "512 KiB", "1048576".
func ParseByteSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size (use e.g. 10MB, 512KB or a number of bytes)", s)
	}
	return n * mult, nil
}

// UnmarshalYAML accepts a plain domain name or {name, case_sensitive_local_part}.
func (d *Domain) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		d.Name = n.Value
		return nil
	}
	type plain Domain
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*d = Domain(p)
	return nil
}

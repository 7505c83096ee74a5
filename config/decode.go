package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decode parses YAML and checks it against the Org schema: every unknown
// key and every value of the wrong type is reported with its field path and
// line (with the nearest known key for a typo), all in one pass. A bad value
// is left at its zero value so that the rest of the file still decodes and
// validates; a YAML syntax error stops at once.
func decode(data []byte, name string) (*Org, *lineIndex, Errors, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return nil, nil, nil, fmt.Errorf("%s: the organization file is empty", name)
	}
	lines := &lineIndex{m: map[string]int{}}
	lines.walk(root.Content[0], "")
	var errs Errors
	checkSchema(root.Content[0], reflect.TypeFor[Org](), "", &errs)
	org := &Org{}
	if err := root.Decode(org); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return org, lines, errs, nil
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
)

// checkSchema walks node n, which should hold a value of type t at field
// path, and reports unknown keys and undecodable values. A bad value is
// replaced by null in the tree so the whole document still decodes.
func checkSchema(n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	if n.Kind == yaml.AliasNode || n.Tag == "!!null" {
		return // aliases are the decoder's (it refuses recursive ones)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(line int, field, format string, args ...any) {
		*errs = append(*errs, FieldError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	leaf := func() {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			bad(n.Line, path, "%s", valueProblem(n, t, err))
			*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		}
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case t == timeType, custom && !(t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode):
		leaf()
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad(n.Line, path, "expected a mapping (key: value), got %s", describe(n))
			*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fp := k.Value
			if path != "" {
				fp = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := nearest(k.Value, fields); s != "" {
					msg += " (did you mean " + s + "?)"
				}
				bad(k.Line, fp, "%s", msg)
				continue
			}
			checkSchema(v, ft, fp, errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad(n.Line, path, "expected a list, got %s", describe(n))
			*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
			return
		}
		for i, c := range n.Content {
			checkSchema(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad(n.Line, path, "expected a mapping (key: value), got %s", describe(n))
			*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkSchema(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, errs)
		}
	default:
		leaf()
	}
}

// yamlFields maps a struct's YAML keys to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		out[tag] = f.Type
	}
	return out
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// valueProblem says why a value does not fit its field, in the user's
// terms rather than Go's.
func valueProblem(n *yaml.Node, t reflect.Type, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// Our own unmarshalers (durations, sizes) say what they want;
		// drop the "line N:" they add, the caller prints the line.
		msg := err.Error()
		if strings.HasPrefix(msg, "line ") {
			if i := strings.Index(msg, ": "); i > 0 {
				msg = msg[i+2:]
			}
		}
		return msg
	}
	want := "a " + t.Kind().String()
	switch {
	case t == timeType:
		want = "a time (RFC 3339, e.g. 2025-01-10T09:00:00Z)"
	case t.Kind() == reflect.Bool:
		want = "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "a whole number"
	case t.Kind() == reflect.String:
		want = "a string"
	}
	return fmt.Sprintf("%s is not %s", describe(n), want)
}

// nearest is the known key closest to a misspelt one, or "" when none is
// close enough to be a likely typo.
func nearest(key string, known map[string]reflect.Type) string {
	best, bestD := "", 0
	for k := range known {
		d := editDistance(strings.ToLower(key), k)
		if best == "" || d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(key)/3) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
		if es[i].Line == 0 {
			es[i].Line = l.line(es[i].Field)
		}
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

package tracking

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// detailOrder is the order WriteText prints the details people look for
// first; others follow sorted by key.
var detailOrder = []string{"rule", "store", "folder", "path", "cost", "next_hop", "code", "reason"}

// WriteText prints a collected route for people: one line per event (time,
// server, event, queue id, recipient, details), then one line per server
// that did not answer.
func WriteText(w io.Writer, r Result) {
	if len(r.Events) == 0 {
		fmt.Fprintln(w, "no events found")
	}
	for _, e := range r.Events {
		var b strings.Builder
		fmt.Fprintf(&b, "%s  %-8s %-9s", e.Time.UTC().Format("2006-01-02 15:04:05.000"), e.Server, e.Kind)
		if e.QueueID != "" {
			field(&b, "queue", e.QueueID)
		}
		if e.Recipient != "" {
			field(&b, "rcpt", e.Recipient)
		}
		for _, k := range detailKeys(e.Details) {
			field(&b, k, e.Details[k])
		}
		fmt.Fprintln(w, b.String())
	}
	names := make([]string, 0, len(r.Unreachable))
	for s := range r.Unreachable {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		fmt.Fprintf(w, "not answering: %s (%s)\n", s, r.Unreachable[s])
	}
}

func detailKeys(d map[string]string) []string {
	keys := make([]string, 0, len(d))
	for _, k := range detailOrder {
		if _, ok := d[k]; ok {
			keys = append(keys, k)
		}
	}
	rest := make([]string, 0, len(d))
	for k := range d {
		known := false
		for _, o := range detailOrder {
			known = known || k == o
		}
		if !known {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(keys, rest...)
}

// field writes " key=value", quoting values a reader could misparse.
func field(b *strings.Builder, k, v string) {
	b.WriteByte(' ')
	b.WriteString(k)
	b.WriteByte('=')
	if v == "" || strings.ContainsAny(v, " \t\"=") || !strconv.CanBackquote(v) {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}

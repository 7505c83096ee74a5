package imapd

import (
	"strings"
	"testing"
)

// LIST (SUBSCRIBED RECURSIVEMATCH) (RFC 5258 3.5, imaptest listext): an
// unsubscribed mailbox that matches gets CHILDINFO ("SUBSCRIBED") when a
// subscribed descendant does not match; not when the descendant matches
// (it is listed itself) or the mailbox is subscribed.
func TestListRecursiveMatchChildInfo(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	for _, n := range []string{"p/a/x", "p/b/b", "p/c/c", "p/c/d"} {
		wantOK(t, r.cmd("C CREATE "+n), "C")
		wantOK(t, r.cmd("S SUBSCRIBE "+n), "S")
	}
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{`p/a%`, []string{`* LIST (\HasChildren) "/" "p/a" (CHILDINFO ("SUBSCRIBED"))`}},
		{`p*b`, []string{`* LIST (\HasNoChildren \Subscribed) "/" "p/b/b"`}},
		{`p*c`, []string{`* LIST (\HasChildren) "/" "p/c" (CHILDINFO ("SUBSCRIBED"))`, `* LIST (\HasNoChildren \Subscribed) "/" "p/c/c"`}},
		{`(p/a p/a/x)`, []string{`* LIST (\HasNoChildren \Subscribed) "/" "p/a/x"`}},
	} {
		lines := r.cmd(`L LIST (SUBSCRIBED RECURSIVEMATCH) "" ` + c.pattern)
		wantOK(t, lines, "L")
		got := grep(lines, "* LIST")
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH) %s:\n%s\nwant\n%s", c.pattern, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

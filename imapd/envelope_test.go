package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// appendRaw appends msg to mailbox over a raw session.
func (r *rawConn) appendRaw(mailbox, msg string) {
	r.t.Helper()
	r.send(fmt.Sprintf("AP APPEND %s {%d}\r\n", mailbox, len(msg)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		r.t.Fatalf("APPEND: want a continuation, got %q", l)
	}
	r.send(msg + "\r\n")
	if l := tagged(r.until("AP")); !strings.HasPrefix(l, "AP OK") {
		r.t.Fatalf("APPEND: %q", l)
	}
}

// ENVELOPE keeps RFC 5322 groups as start and end markers (RFC 3501
// 7.4.2; imaptest "fetch-envelope").
func TestEnvelopeGroupSyntax(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	r.appendRaw("INBOX", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\n"+
		"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: group:;, group2: (foo) ;\r\n\r\nbody\r\n")
	r.appendRaw("INBOX", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: \"Colon: Name\" <a@b.example>, c@d.example\r\n\r\nbody\r\n")
	r.appendRaw("INBOX", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n\r\nbody\r\n")
	r.cmd("S SELECT INBOX")
	got := strings.Join(r.cmd("F FETCH 1:3 ENVELOPE"), "\n")
	for _, want := range []string{
		`((NIL NIL "group" NIL) (NIL NIL "g1" "d1.org") (NIL NIL "g2" "d2.org") (NIL NIL NIL NIL) (NIL NIL "group2" NIL) (NIL NIL "g3" "d3.org") (NIL NIL NIL NIL)) ((NIL NIL "group" NIL) (NIL NIL NIL NIL) (NIL NIL "group2" NIL) (NIL NIL NIL NIL))`,
		`(("Colon: Name" NIL "a" "b.example") (NIL NIL "c" "d.example"))`,
		`((NIL "@route" "user" "domain"))`, // obsolete source route kept as the adl
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FETCH ENVELOPE lacks\n%s\ngot\n%s", want, got)
		}
	}
}

// SEARCH FROM matches the address with comments removed from its
// addr-spec, the display name, and a group name (imaptest
// "search-addresses").
func TestSearchAddresses(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	for _, from := range []string{
		"user-from@domain.org", "RealFrom <user-from@domain.org>", "<user-from (comment)@ (comment) domain.org>",
		"user-from@domain.org (RealFrom)", "user-from1@domain.org, user-from2@domain.org",
	} {
		r.appendRaw("INBOX", "From: "+from+"\r\nTo: groupname: groupuser1@domain.org;\r\nSubject: s\r\n\r\nbody\r\n")
	}
	r.cmd("S SELECT INBOX")
	for _, c := range []struct{ query, want string }{
		{"FROM user-from@domain.org", "* SEARCH 1 2 3 4"},
		{"FROM realfrom", "* SEARCH 2 4"},
		{"FROM ser-fro", "* SEARCH 1 2 3 4 5"},
		{"FROM user-from2", "* SEARCH 5"},
		{"TO groupname", "* SEARCH 1 2 3 4 5"},
		{"TO groupuser4", "* SEARCH"},
	} {
		if got := r.cmd("Q SEARCH " + c.query); got[0] != c.want {
			t.Errorf("SEARCH %s = %q, want %q", c.query, got, c.want)
		}
	}
}

// LSUB with "%" lists the parent of a subscribed mailbox at that level as
// \Noselect (RFC 3501 6.3.9; imaptest "subscribe").
func TestLSubListsNoselectParents(t *testing.T) {
	e := newEnv(t)
	r := e.rawLogin("alice")
	for _, c := range []string{"C CREATE box/test", "C CREATE box/test2/test", "C CREATE box/test3/test3",
		"C SUBSCRIBE box/test", "C SUBSCRIBE box/test2/test", "C SUBSCRIBE box/test3/test3"} {
		if l := tagged(r.cmd(c)); !strings.HasPrefix(l, "C OK") {
			t.Fatalf("%s: %q", c, l)
		}
	}
	got := strings.Join(r.cmd(`L LSUB "" box/%`), "\n")
	want := "* LSUB () \"/\" \"box/test\"\n* LSUB (\\Noselect) \"/\" \"box/test2\"\n* LSUB (\\Noselect) \"/\" \"box/test3\"\nL OK LSUB completed"
	if got != want {
		t.Fatalf("LSUB box/%%:\n%s\nwant\n%s", got, want)
	}
	got = strings.Join(r.cmd(`L LSUB "" *test`), "\n")
	if !strings.Contains(got, "box/test2/test") || strings.Contains(got, "Noselect") {
		t.Fatalf("LSUB *test:\n%s", got)
	}
}

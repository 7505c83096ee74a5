package imapd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/store"
)

// threadMsgs are delivered in this order: Subject, Date, Message-ID,
// References, From. Internal dates follow delivery order.
var threadMsgs = [][5]string{
	{"hello", "Mon, 02 Jun 2025 10:00:00 +0000", "<a@x>", "", "Zed <zed@x.example>"},
	{"Re: hello", "Mon, 02 Jun 2025 09:00:00 +0000", "<b@x>", "<a@x>", "amy@x.example"},
	{"[list] Other", "Mon, 02 Jun 2025 11:00:00 +0000", "<c@x>", "", "Bob <bob@x.example>"},
	{"Re: hello", "Mon, 02 Jun 2025 12:00:00 +0000", "<d@x>", "<a@x> <b@x>", "carl@x.example"},
	{"Fwd: other", "Mon, 02 Jun 2025 08:00:00 +0000", "<e@x>", "<gone@x>", "dan@x.example"},
}

func threadBody(m [5]string) []byte {
	refs := ""
	if m[3] != "" {
		refs = "References: " + m[3] + "\r\n"
	}
	return fmt.Appendf(nil, "From: %s\r\nTo: alice@test.example\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n%s\r\nbody\r\n", m[4], m[0], m[1], m[2], refs)
}

// SORT, THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256) answer the
// same on a personal folder and a public folder (issue 14: "on personal
// and public folders alike").
func TestSortAndThreadPersonalAndPublic(t *testing.T) {
	e := newEnv(t)
	for _, where := range []struct{ mailbox, folder string }{{"INBOX", ""}, {"Public Folders/Open", "/Open"}} {
		t.Run(where.mailbox, func(t *testing.T) {
			for _, m := range threadMsgs {
				d := store.Delivery{Store: "s1-mbx", User: "alice", Class: "IPM.Note", Body: threadBody(m)}
				if where.folder != "" {
					d = store.Delivery{Store: "s1-pub", Folder: where.folder, Class: "IPM.Post", Body: threadBody(m)}
				}
				if _, _, err := e.store.Deliver(context.Background(), d); err != nil {
					t.Fatal(err)
				}
			}
			c := e.login("alice", nil)
			if _, err := c.Select(where.mailbox, nil).Wait(); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				crit []imapclient.SortCriterion
				want []uint32
			}{
				{[]imapclient.SortCriterion{{Key: imapclient.SortKeyDate}}, []uint32{5, 2, 1, 3, 4}},
				{[]imapclient.SortCriterion{{Key: imapclient.SortKeySubject}, {Key: imapclient.SortKeyDate, Reverse: true}}, []uint32{4, 1, 2, 3, 5}},
				{[]imapclient.SortCriterion{{Key: imapclient.SortKeyFrom}}, []uint32{2, 3, 4, 5, 1}},
				{[]imapclient.SortCriterion{{Key: imapclient.SortKeyArrival, Reverse: true}}, []uint32{5, 4, 3, 2, 1}},
				{[]imapclient.SortCriterion{{Key: "DISPLAYFROM"}}, []uint32{2, 3, 4, 5, 1}},
			} {
				got, err := c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{}, SortCriteria: tc.crit}).Wait()
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("SORT %v = %v, %v; want %v", tc.crit, got, err, tc.want)
				}
			}
			// Only matching messages are sorted; UID SORT lists UIDs.
			got, err := c.UIDSort(&imapclient.SortOptions{
				SearchCriteria: &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hello"}}},
				SortCriteria:   []imapclient.SortCriterion{{Key: imapclient.SortKeyDate, Reverse: true}},
			}).Wait()
			if err != nil || !slices.Equal(got, []uint32{4, 1, 2}) {
				t.Errorf("UID SORT SUBJECT hello = %v, %v", got, err)
			}
			threads, err := c.Thread(&imapclient.ThreadOptions{Algorithm: imap.ThreadReferences, SearchCriteria: &imap.SearchCriteria{}}).Wait()
			// 1 <- 2 <- 4 by References; 5's parent is missing (a dummy
			// with one child, promoted); 3 and 5 share the base subject
			// "OTHER" and 5 is a forward: it becomes 3's child.
			if want := "(1 2 4)(3 5)"; err != nil || formatThreads(threads) != want {
				t.Errorf("THREAD REFERENCES = %s, %v; want %s", formatThreads(threads), err, want)
			}
			threads, err = c.Thread(&imapclient.ThreadOptions{Algorithm: imap.ThreadOrderedSubject, SearchCriteria: &imap.SearchCriteria{}}).Wait()
			if want := "(5 3)(2 (1)(4))"; err != nil || formatThreads(threads) != want {
				t.Errorf("THREAD ORDEREDSUBJECT = %s, %v; want %s", formatThreads(threads), err, want)
			}
		})
	}
}

// formatThreads writes imapclient's thread lists as the wire does.
func formatThreads(ts []imapclient.ThreadData) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteByte('(')
		for i, n := range t.Chain {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprint(&b, n)
		}
		if len(t.Chain) > 0 && len(t.SubThreads) > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(formatThreads(t.SubThreads))
		b.WriteByte(')')
	}
	return b.String()
}

// The wire forms: a dummy parent, ESORT's RETURN, errors, capabilities.
func TestSortThreadRawLines(t *testing.T) {
	e := newEnv(t)
	for _, m := range [][]byte{
		[]byte("Subject: a\r\nReferences: <gone@x>\r\n\r\n1\r\n"),
		[]byte("Subject: b\r\nReferences: <gone@x>\r\n\r\n2\r\n"),
		[]byte("Subject: c\r\n\r\n3\r\n"),
	} {
		if _, _, err := e.store.Deliver(context.Background(), store.Delivery{Store: "s1-mbx", User: "alice", Class: "IPM.Note", Body: m}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.rawLogin("alice")
	caps := strings.Join(r.cmd("C CAPABILITY"), " ")
	for _, c := range []string{" SORT ", " SORT=DISPLAY ", " ESORT ", " THREAD=REFERENCES", " THREAD=ORDEREDSUBJECT"} {
		if !strings.Contains(caps+" ", c) {
			t.Errorf("CAPABILITY lacks%s: %s", c, caps)
		}
	}
	if got := tagged(r.cmd("S SORT (ARRIVAL) UTF-8 ALL")); !strings.HasPrefix(got, "S BAD") {
		t.Errorf("SORT before SELECT: %q, want BAD", got)
	}
	r.cmd("X SELECT INBOX")
	for _, tc := range []struct{ cmd, untagged, status string }{
		{"T THREAD REFERENCES US-ASCII ALL", "* THREAD ((1)(2))(3)", "T OK"},
		{"T THREAD REFERENCES UTF-8 3", "* THREAD (3)", "T OK"},
		{"T THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (1)(2)(3)", "T OK"},
		{"T THREAD REFERENCES UTF-8 10", "* THREAD", "T OK"},
		{"T THREAD NOSUCH UTF-8 ALL", "", "T BAD"},
		{"S SORT (REVERSE ARRIVAL) UTF-8 ALL", "* SORT 3 2 1", "S OK"},
		{"S SORT (SUBJECT) UTF-8 NOT 2", "* SORT 1 3", "S OK"},
		{"S SORT RETURN (MIN MAX COUNT) (REVERSE SUBJECT) UTF-8 ALL", `* ESEARCH (TAG "S") MIN 3 MAX 1 COUNT 3`, "S OK"},
		{"S SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL", `* ESEARCH (TAG "S") ALL 3,2,1`, "S OK"},
		{"S UID SORT RETURN (ALL) (ARRIVAL) UTF-8 ALL", `* ESEARCH (TAG "S") UID ALL 1:3`, "S OK"},
		{"S SORT () UTF-8 ALL", "", "S BAD"},
		{"S SORT (NOSUCH) UTF-8 ALL", "", "S BAD"},
		{"S SORT (ARRIVAL) KOI8-R ALL", "", "S NO [BADCHARSET]"},
		{"S SORT (ARRIVAL) UTF-8", "", "S BAD"},
	} {
		lines := r.cmd(tc.cmd)
		if got := tagged(lines); !strings.HasPrefix(got, tc.status) {
			t.Errorf("%s: %q, want %s", tc.cmd, lines, tc.status)
			continue
		}
		if tc.untagged != "" && (len(lines) < 2 || lines[0] != tc.untagged) {
			t.Errorf("%s: %q, want %q", tc.cmd, lines, tc.untagged)
		}
	}
}

// The login OK (Capabilities) lists SORT, THREAD and the extensions
// clients look for, and nothing of the not-authenticated state.
func TestCapabilitiesListSortAndThread(t *testing.T) {
	e := newEnv(t)
	caps := e.srv.Capabilities()
	for _, want := range []string{"IMAP4rev1", "SORT", "SORT=DISPLAY", "ESORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "BINARY", "CHILDREN", "NAMESPACE", "LITERAL+"} {
		if !slices.Contains(caps, want) {
			t.Errorf("Capabilities() lacks %s: %v", want, caps)
		}
	}
	for _, never := range []string{"STARTTLS", "AUTH=PLAIN", "LOGINDISABLED"} {
		if slices.Contains(caps, never) {
			t.Errorf("Capabilities() has pre-login %s: %v", never, caps)
		}
	}
}

package imapsort

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct {
		in    string
		base  string
		reply bool
	}{
		// imaptest "sort-subject" (decoded as the caller decodes them).
		{"a", "A", false},
		{"C", "C", false},
		{"_", "_", false},
		{"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "B", true},
		{"b (a)", "B (A)", false},
		{"Re: [FWD: c]", "C", true},
		{"[xyz]", "[XYZ]", false},
		{"", "", false},
		{" ", "", false},
		{"RE: C", "C", true},
		{"Ad: Re: Ad: Re: Ad: x", "AD: RE: AD: RE: AD: X", false},
		{"re: [fwd: [fwd: re: [fwd: babylon]]]", "BABYLON", true},
		// RFC 5256 ABNF corners.
		{"Re[2]: hello", "HELLO", true},
		{"Re : hello", "HELLO", true},
		{"[list] hello", "HELLO", false},
		{"[a] [b] hello", "HELLO", false},
		{"[a] [b]", "[B]", false},
		{"Fwd:Fw:RE:x", "X", true},
		{"Ref: x", "REF: X", false},
		{"hello\t \r\n  world", "HELLO WORLD", false},
		{"x (fwd) y", "X (FWD) Y", false},
		{"[fwd: x] y", "Y", false}, // a leading blob goes (step 4)
		{"[fwd:]", "", true},
		{"Re:", "", true},
	} {
		base, reply := BaseSubject(tc.in)
		if base != tc.base || reply != tc.reply {
			t.Errorf("BaseSubject(%q) = %q, %v; want %q, %v", tc.in, base, reply, tc.base, tc.reply)
		}
	}
}

func TestMsgIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"<a@b>", []string{"a@b"}},
		{"<a@b> <c@d>", []string{"a@b", "c@d"}},
		{" (comment) <a@b>\r\n\t<c@d>", []string{"a@b", "c@d"}},
		{"<nodomain> <a@b>", []string{"a@b"}},
		{"<a b@c> <x@y>", []string{"x@y"}},
		{"<broken <a@b>", []string{"a@b"}},
		{"<@b> <a@>", nil},
		{"a@b", nil},
		{"<a@b", nil},
	} {
		if got := MsgIDs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("MsgIDs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func at(s string) time.Time {
	t, err := time.Parse("15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestSort(t *testing.T) {
	// imaptest "sort-arrival": internal dates and sizes.
	arrival := []Message{
		{Num: 1, Arrival: at("00:00:00"), Size: 1},
		{Num: 2, Arrival: at("02:00:00"), Size: 1},
		{Num: 3, Arrival: at("01:00:00"), Size: 2},
		{Num: 4, Arrival: at("02:00:00"), Size: 2},
		{Num: 5, Arrival: at("02:00:00"), Size: 4},
	}
	// imaptest "sort-addresses": addr-mailbox of the first address (a
	// group's name).
	addrs := []Message{
		{Num: 1, From: "user2", To: "user2", Cc: "user2"},
		{Num: 2, From: "user2", To: "user2", Cc: "user2"},
		{Num: 3, From: "user1", To: "user1", Cc: "User1"},
	}
	dated := []Message{
		{Num: 10, Arrival: at("05:00:00"), Sent: at("01:00:00"), DisplayFrom: "bob", Subject: "Re: b"},
		{Num: 11, Arrival: at("02:00:00"), DisplayFrom: "Alice", Subject: "a"},
		{Num: 12, Arrival: at("09:00:00"), Sent: at("03:00:00"), DisplayFrom: "carol", Subject: "B"},
	}
	for _, tc := range []struct {
		name     string
		msgs     []Message
		criteria []Criterion
		want     []uint32
	}{
		{"arrival", arrival, []Criterion{{Key: Arrival}}, []uint32{1, 3, 2, 4, 5}},
		{"reverse arrival", arrival, []Criterion{{Key: Arrival, Reverse: true}}, []uint32{2, 4, 5, 3, 1}},
		{"arrival reverse size", arrival, []Criterion{{Key: Arrival}, {Key: Size, Reverse: true}}, []uint32{1, 3, 5, 4, 2}},
		{"from", addrs, []Criterion{{Key: From}}, []uint32{3, 1, 2}},
		{"reverse cc", addrs, []Criterion{{Key: Cc, Reverse: true}}, []uint32{1, 2, 3}},
		{"to reverse arrival", addrs, []Criterion{{Key: To}, {Key: Arrival, Reverse: true}}, []uint32{3, 1, 2}},
		// Sent date, INTERNALDATE without a Date header (RFC 5256 2.2).
		{"date", dated, []Criterion{{Key: Date}}, []uint32{10, 11, 12}},
		{"displayfrom", dated, []Criterion{{Key: DisplayFrom}}, []uint32{11, 10, 12}},
		{"subject", dated, []Criterion{{Key: Subject}}, []uint32{11, 10, 12}},
		{"subject reverse date", dated, []Criterion{{Key: Subject}, {Key: Date, Reverse: true}}, []uint32{11, 12, 10}},
		{"no criteria keeps order", dated, nil, []uint32{10, 11, 12}},
	} {
		if got := Sort(tc.msgs, tc.criteria); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Sort = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// format writes threads as a THREAD response does.
func format(ts []Thread) string {
	var b strings.Builder
	var node func(t Thread)
	node = func(t Thread) {
		if t.Num != 0 {
			fmt.Fprint(&b, t.Num)
		}
		for len(t.Children) == 1 && t.Num != 0 {
			t = t.Children[0]
			fmt.Fprintf(&b, " %d", t.Num)
		}
		if len(t.Children) > 0 && t.Num != 0 {
			b.WriteByte(' ')
		}
		for _, c := range t.Children {
			b.WriteByte('(')
			node(c)
			b.WriteByte(')')
		}
	}
	for _, t := range ts {
		b.WriteByte('(')
		node(t)
		b.WriteByte(')')
	}
	return b.String()
}

func TestReferences(t *testing.T) {
	d := at("15:06:23")
	for _, tc := range []struct {
		name string
		msgs []Message
		want string
	}{
		{"imaptest thread: a reference loop is not linked", []Message{
			{Num: 1, Arrival: at("17:06:23"), MessageID: "a@b"},
			{Num: 2, Arrival: at("15:06:23"), MessageID: "b@b", References: []string{"a@b", "c@b"}},
			{Num: 3, Arrival: at("16:06:25"), MessageID: "c@b", References: []string{"b@b"}},
		}, "(3 2)(1)"},
		{"imaptest thread after expunge", []Message{
			{Num: 1, Arrival: at("15:06:23"), MessageID: "b@b", References: []string{"a@b", "c@b"}},
			{Num: 2, Arrival: at("16:06:25"), MessageID: "c@b", References: []string{"b@b"}},
		}, "(2 1)"},
		{"thread4: promoted child merged by subject", []Message{
			{Num: 1, Arrival: d, MessageID: "a@b", Subject: "foo"},
			{Num: 2, Arrival: d.Add(time.Second), MessageID: "b@b", References: []string{"c@b"}, Subject: "Re: foo"},
		}, "(1 2)"},
		{"thread6: a dummy with two children stays", []Message{
			{Num: 1, Arrival: d, References: []string{"a@b"}},
			{Num: 2, Arrival: d.Add(time.Second), References: []string{"a@b"}},
		}, "((1)(2))"},
		{"thread7: duplicate Message-ID", []Message{
			{Num: 1, Arrival: d, MessageID: "a@b"},
			{Num: 2, Arrival: d, MessageID: "b@b", References: []string{"a@b"}},
			{Num: 3, Arrival: d, MessageID: "c@b", References: []string{"b@b"}},
			{Num: 4, Arrival: d, MessageID: "b@b", References: []string{"a@b"}},
		}, "(1 (2 3)(4))"},
		{"thread5: In-Reply-To", []Message{
			{Num: 1, Arrival: at("17:06:23"), MessageID: "1@b"},
			{Num: 2, Arrival: d, MessageID: "2@b", InReplyTo: []string{"1@b"}},
			{Num: 3, Arrival: d, MessageID: "3@b", InReplyTo: []string{"1@b"}},
			{Num: 4, Arrival: d, MessageID: "4@b", InReplyTo: []string{"2@b"}},
		}, "(1 (2 4)(3))"},
		{"thread5: dummy root sorted by its first child", []Message{
			{Num: 1, Arrival: d, MessageID: "3@b", InReplyTo: []string{"1@b"}},
			{Num: 2, Arrival: d, MessageID: "4@b", InReplyTo: []string{"2@b"}},
			{Num: 3, Arrival: d, MessageID: "5@b", InReplyTo: []string{"2@b"}},
		}, "(1)((2)(3))"},
		{"same subject, neither a reply: a dummy groups them", []Message{
			{Num: 1, Arrival: d, MessageID: "x@b", Subject: "hello"},
			{Num: 2, Arrival: d.Add(time.Minute), MessageID: "y@b", Subject: "[list] hello"},
		}, "((1)(2))"},
		{"the non-reply becomes the parent", []Message{
			{Num: 1, Arrival: d, MessageID: "x@b", Subject: "Re: hello"},
			{Num: 2, Arrival: d.Add(time.Minute), MessageID: "y@b", Subject: "hello"},
		}, "(2 1)"},
		{"self reference", []Message{
			{Num: 1, Arrival: d, MessageID: "x@b", References: []string{"x@b"}},
		}, "(1)"},
	} {
		if got := format(References(tc.msgs)); got != tc.want {
			t.Errorf("%s: References = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestOrderedSubject(t *testing.T) {
	// imaptest "thread-orderedsubject2": Date header when there is one,
	// INTERNALDATE otherwise.
	s := func(h, m, sec int) time.Time { return time.Date(2008, 2, 22, h, m, sec, 0, time.UTC) }
	msgs := []Message{
		{Num: 1, Subject: "a", Arrival: s(21, 0, 1), Sent: s(20, 0, 10)},
		{Num: 2, Subject: "b", Arrival: s(21, 0, 2), Sent: s(20, 0, 9)},
		{Num: 3, Subject: "a", Arrival: s(21, 0, 3), Sent: s(20, 0, 8)},
		{Num: 4, Subject: "b", Arrival: s(21, 0, 4), Sent: s(20, 0, 7)},
		{Num: 5, Subject: "a", Arrival: s(20, 0, 30)},
		{Num: 6, Subject: "b", Arrival: s(20, 0, 29)},
		{Num: 7, Subject: "a", Arrival: s(20, 0, 28)},
		{Num: 8, Subject: "b", Arrival: s(20, 0, 27)},
	}
	if got, want := format(OrderedSubject(msgs)), "(4 (2)(8)(6))(3 (1)(7)(5))"; got != want {
		t.Errorf("OrderedSubject = %s, want %s", got, want)
	}
	two := []Message{{Num: 1, Subject: "x"}, {Num: 2, Subject: "Re: x"}, {Num: 3, Subject: "y"}}
	if got, want := format(OrderedSubject(two)), "(1 2)(3)"; got != want {
		t.Errorf("OrderedSubject = %s, want %s", got, want)
	}
}

// nums lists the message numbers of a thread forest depth first.
func nums(ts []Thread, out []uint32) []uint32 {
	for _, t := range ts {
		if t.Num != 0 {
			out = append(out, t.Num)
		}
		out = nums(t.Children, out)
	}
	return out
}

func FuzzBaseSubject(f *testing.F) {
	for _, s := range []string{"Re: [fwd: x]", "[a] [b]", "(fwd)", "[fwd: [fwd: re: x]]", "Re[2]:x", " \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, _ := BaseSubject(s)
		if strings.HasPrefix(base, " ") || strings.HasSuffix(base, " ") || strings.Contains(base, "  ") {
			t.Fatalf("BaseSubject(%q) = %q: untrimmed white space", s, base)
		}
		if again, _ := BaseSubject(base); again != base {
			t.Fatalf("BaseSubject not idempotent: %q -> %q -> %q", s, base, again)
		}
	})
}

func FuzzMsgIDs(f *testing.F) {
	f.Add("<a@b> <c@d>")
	f.Add("<<a@b>>")
	f.Fuzz(func(t *testing.T, s string) {
		for _, id := range MsgIDs(s) {
			if !strings.Contains(s, "<"+id+">") || !strings.Contains(id, "@") {
				t.Fatalf("MsgIDs(%q) returned %q", s, id)
			}
		}
	})
}

// FuzzThreads builds messages whose IDs and references come from the
// input: whatever the links (loops, duplicates, self references), every
// message appears exactly once in each algorithm's threads.
func FuzzThreads(f *testing.F) {
	f.Add([]byte{1, 2, 3, 1, 0, 2, 3, 3, 2})
	f.Add([]byte{0, 0, 0, 0, 5, 5, 5, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		var msgs []Message
		for i := 0; i+2 < len(b) && len(msgs) < 64; i += 3 {
			id := func(c byte) string { return fmt.Sprintf("%d@x", c%8) }
			m := Message{Num: uint32(len(msgs) + 1), Arrival: time.Unix(int64(b[i+2]%4), 0), Subject: [...]string{"a", "Re: a", "b", ""}[b[i]%4]}
			if b[i]%5 != 0 {
				m.MessageID = id(b[i])
			}
			if b[i+1]%3 == 1 {
				m.References = []string{id(b[i+1]), id(b[i+1] / 3)}
			} else if b[i+1]%3 == 2 {
				m.InReplyTo = []string{id(b[i+1])}
			}
			msgs = append(msgs, m)
		}
		for name, ts := range map[string][]Thread{"REFERENCES": References(msgs), "ORDEREDSUBJECT": OrderedSubject(msgs)} {
			got := nums(ts, nil)
			slices.Sort(got)
			if len(got) != len(msgs) {
				t.Fatalf("%s: %d messages threaded, want %d: %s", name, len(got), len(msgs), format(ts))
			}
			for i, n := range got {
				if n != uint32(i+1) {
					t.Fatalf("%s: numbers %v", name, got)
				}
			}
		}
	})
}

package imapsort

import (
	"slices"
	"strconv"
	"time"
)

// Thread is a node of a THREAD response: a message (Num), or a dummy
// (Num 0) standing for a message that is not there and grouping its
// Children (only at the top level once pruned, RFC 5256 REFERENCES 3).
type Thread struct {
	Num      uint32
	Children []Thread
}

// OrderedSubject threads msgs by THREAD=ORDEREDSUBJECT (RFC 5256 2.1):
// messages with the same base subject form a thread, in sent-date order,
// the first the parent of all the others; threads are ordered by the
// sent date of their first message.
func OrderedSubject(msgs []Message) []Thread {
	type item struct {
		i       int
		subject string
		date    time.Time
	}
	items := make([]item, len(msgs))
	for i := range msgs {
		s, _ := BaseSubject(msgs[i].Subject)
		items[i] = item{i: i, subject: s, date: msgs[i].sentDate()}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if a.subject != b.subject {
			if a.subject < b.subject {
				return -1
			}
			return 1
		}
		return a.date.Compare(b.date)
	})
	type group struct {
		first int // index into items
		t     Thread
	}
	var groups []group
	for k, it := range items {
		if k > 0 && items[k-1].subject == it.subject {
			g := &groups[len(groups)-1]
			g.t.Children = append(g.t.Children, Thread{Num: msgs[it.i].Num})
			continue
		}
		groups = append(groups, group{first: k, t: Thread{Num: msgs[it.i].Num}})
	}
	slices.SortStableFunc(groups, func(a, b group) int {
		ia, ib := items[a.first], items[b.first]
		if c := ia.date.Compare(ib.date); c != 0 {
			return c
		}
		return ia.i - ib.i
	})
	out := make([]Thread, len(groups))
	for i, g := range groups {
		out[i] = g.t
	}
	return out
}

// container is a node of the REFERENCES algorithm: a message, or a dummy
// for a referenced message that is not among msgs.
type container struct {
	msg      *Message
	idx      int // the message's place in msgs, its tie-breaker
	reply    bool
	subject  string
	parent   *container
	children []*container
}

func (c *container) unlink() {
	if p := c.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(x *container) bool { return x == c })
		c.parent = nil
	}
}

func (c *container) link(child *container) {
	child.parent = c
	c.children = append(c.children, child)
}

// ancestorOf says whether c is child or one of child's ancestors: a link
// from child to c would make a loop.
func (c *container) ancestorOf(child *container) bool {
	for x := child; x != nil; x = x.parent {
		if x == c {
			return true
		}
	}
	return false
}

// first is the message a node is dated and named by: itself, or a dummy's
// first child (children sorted already).
func (c *container) first() *container {
	for c.msg == nil && len(c.children) > 0 {
		c = c.children[0]
	}
	return c
}

func (c *container) isDummy() bool { return c.msg == nil }

// References threads msgs by THREAD=REFERENCES (RFC 5256 2.2, steps 1-6:
// link by References/In-Reply-To without loops, prune dummies, merge
// top-level threads with the same base subject, sort siblings by sent
// date).
func References(msgs []Message) []Thread {
	byID := map[string]*container{}
	var all []*container // creation order: deterministic roots
	get := func(id string) *container {
		c, ok := byID[id]
		if !ok {
			c = &container{idx: -1}
			byID[id] = c
			all = append(all, c)
		}
		return c
	}
	// (1) link messages by their references.
	for i := range msgs {
		m := &msgs[i]
		id := m.MessageID
		if c, ok := byID[id]; id == "" || ok && c.msg != nil {
			// No ID, or a duplicate: only the first message keeps it.
			id = "\x00" + strconv.Itoa(i)
		}
		c := get(id)
		c.msg, c.idx = m, i
		c.subject, c.reply = BaseSubject(m.Subject)
		refs := m.References
		if len(refs) == 0 && len(m.InReplyTo) > 0 {
			refs = m.InReplyTo[:1]
		}
		for k := 0; k+1 < len(refs); k++ {
			p, ch := get(refs[k]), get(refs[k+1])
			if ch.parent == nil && !ch.ancestorOf(p) {
				p.link(ch)
			}
		}
		c.unlink()
		if len(refs) > 0 {
			if p := get(refs[len(refs)-1]); !c.ancestorOf(p) {
				p.link(c)
			}
		}
	}
	// (2) the roots.
	var roots []*container
	for _, c := range all {
		if c.parent == nil {
			roots = append(roots, c)
		}
	}
	// (3) prune dummies.
	roots = prune(roots, true)
	// (4) order the roots (a dummy by its first child).
	sortSiblings(roots, false)
	// (5) merge roots with the same base subject.
	subjectOf := func(c *container) string { return c.first().subject }
	table := map[string]*container{}
	for _, r := range roots {
		s := subjectOf(r)
		if s == "" {
			continue
		}
		old, ok := table[s]
		if !ok || !old.isDummy() && (r.isDummy() || old.reply && !r.reply) {
			table[s] = r
		}
	}
	merged := roots[:0:0]
	gone := map[*container]bool{}
	replaced := map[*container]*container{}
	for _, r := range roots {
		s := subjectOf(r)
		t := table[s]
		// r.parent: r was the table's message and a dummy took its place.
		if s == "" || t == r || r.parent != nil {
			merged = append(merged, r)
			continue
		}
		switch {
		case t.isDummy() && r.isDummy():
			for _, ch := range r.children {
				t.link(ch)
			}
			gone[r] = true
		case t.isDummy() || r.reply && !t.reply:
			t.link(r)
			gone[r] = true
		default:
			d := &container{idx: -1}
			replaced[t] = d
			d.link(t)
			d.link(r)
			table[s] = d
			gone[r] = true
		}
	}
	roots = roots[:0]
	for _, r := range merged {
		if gone[r] {
			continue
		}
		for replaced[r] != nil {
			r = replaced[r]
		}
		roots = append(roots, r)
	}
	// (6) sort every set of siblings, the deepest first.
	sortSiblings(roots, true)
	return toThreads(roots)
}

// prune removes dummies: one without children goes, one with children
// gives them to its parent, except at the top level where only a single
// child is promoted.
func prune(list []*container, top bool) []*container {
	var out []*container
	for _, c := range list {
		c.children = prune(c.children, false)
		if !c.isDummy() {
			out = append(out, c)
			continue
		}
		if len(c.children) == 0 {
			continue
		}
		if !top || len(c.children) == 1 {
			for _, ch := range c.children {
				ch.parent = c.parent
				out = append(out, ch)
			}
			continue
		}
		out = append(out, c)
	}
	for _, c := range out {
		c.children = slices.Clip(c.children)
	}
	return out
}

// sortSiblings orders list by sent date, then message order; a dummy
// by its first child, so its children are sorted before it is placed.
// deep sorts every level below too.
func sortSiblings(list []*container, deep bool) {
	for _, c := range list {
		if deep || c.isDummy() {
			sortSiblings(c.children, deep)
		}
	}
	slices.SortStableFunc(list, func(a, b *container) int {
		fa, fb := a.first(), b.first()
		if fa.msg == nil || fb.msg == nil {
			return 0
		}
		if c := fa.msg.sentDate().Compare(fb.msg.sentDate()); c != 0 {
			return c
		}
		return fa.idx - fb.idx
	})
}

func toThreads(list []*container) []Thread {
	out := make([]Thread, len(list))
	for i, c := range list {
		if c.msg != nil {
			out[i].Num = c.msg.Num
		}
		out[i].Children = toThreads(c.children)
	}
	return out
}

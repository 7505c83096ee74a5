package imapsort

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Message is what SORT and THREAD know of one message. Callers pass
// messages in sequence-number order: ties keep that order (RFC 5256: the
// lower sequence number first).
type Message struct {
	Num     uint32    // what the response lists: sequence number or UID
	Arrival time.Time // INTERNALDATE
	// Sent is the Date header's time; zero when it is missing or cannot be
	// parsed, and then Arrival stands in (RFC 5256 2.2).
	Sent time.Time
	Size int64
	// Subject is the decoded Subject (BaseSubject is applied here).
	Subject string
	// From, To and Cc are the addr-mailbox of the first address of each
	// header (a group's name for a group), "" when there is none.
	From, To, Cc string
	// DisplayFrom and DisplayTo are RFC 5957's: the decoded display name
	// of the first address, or its addr-spec when it has none.
	DisplayFrom, DisplayTo string
	// MessageID, References and InReplyTo are the IDs of those headers
	// (MsgIDs): only the first Message-ID counts.
	MessageID             string
	References, InReplyTo []string
}

// Key is a SORT key (RFC 5256 3, RFC 5957).
type Key string

// The sort keys.
const (
	Arrival     Key = "ARRIVAL"
	Cc          Key = "CC"
	Date        Key = "DATE"
	From        Key = "FROM"
	Size        Key = "SIZE"
	Subject     Key = "SUBJECT"
	To          Key = "TO"
	DisplayFrom Key = "DISPLAYFROM"
	DisplayTo   Key = "DISPLAYTO"
)

// ParseKey maps a key name, any case, to a Key.
func ParseKey(name string) (Key, bool) {
	k := Key(strings.ToUpper(name))
	switch k {
	case Arrival, Cc, Date, From, Size, Subject, To, DisplayFrom, DisplayTo:
		return k, true
	}
	return "", false
}

// Criterion is one sort key, possibly reversed.
type Criterion struct {
	Key     Key
	Reverse bool
}

// sentDate is the date SORT DATE and the threading algorithms use.
func (m *Message) sentDate() time.Time {
	if m.Sent.IsZero() {
		return m.Arrival
	}
	return m.Sent
}

// sortable holds a message's keys as compared: strings upper-cased once.
type sortable struct {
	m       *Message
	subject string
	from    string
	to      string
	cc      string
	dfrom   string
	dto     string
}

// Sort orders msgs by the criteria, then by their order in msgs, and
// returns their Nums.
func Sort(msgs []Message, criteria []Criterion) []uint32 {
	items := make([]sortable, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		it := sortable{m: m}
		for _, c := range criteria {
			switch c.Key {
			case Subject:
				it.subject, _ = BaseSubject(m.Subject)
			case From:
				it.from = strings.ToUpper(m.From)
			case To:
				it.to = strings.ToUpper(m.To)
			case Cc:
				it.cc = strings.ToUpper(m.Cc)
			case DisplayFrom:
				it.dfrom = strings.ToUpper(m.DisplayFrom)
			case DisplayTo:
				it.dto = strings.ToUpper(m.DisplayTo)
			}
		}
		items[i] = it
	}
	slices.SortStableFunc(items, func(a, b sortable) int {
		for _, c := range criteria {
			r := compareBy(c.Key, &a, &b)
			if c.Reverse {
				r = -r
			}
			if r != 0 {
				return r
			}
		}
		return 0
	})
	out := make([]uint32, len(items))
	for i, it := range items {
		out[i] = it.m.Num
	}
	return out
}

func compareBy(k Key, a, b *sortable) int {
	switch k {
	case Arrival:
		return a.m.Arrival.Compare(b.m.Arrival)
	case Date:
		return a.m.sentDate().Compare(b.m.sentDate())
	case Size:
		return cmp.Compare(a.m.Size, b.m.Size)
	case Subject:
		return strings.Compare(a.subject, b.subject)
	case From:
		return strings.Compare(a.from, b.from)
	case To:
		return strings.Compare(a.to, b.to)
	case Cc:
		return strings.Compare(a.cc, b.cc)
	case DisplayFrom:
		return strings.Compare(a.dfrom, b.dfrom)
	case DisplayTo:
		return strings.Compare(a.dto, b.dto)
	}
	return 0
}

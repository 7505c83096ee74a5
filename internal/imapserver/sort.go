package imapserver

import (
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"pfrouter/internal/imapserver/imapwire"
	"pfrouter/internal/imapsort"
)

// SessionSort is an IMAP session which supports SORT (RFC 5256), and with
// it ESORT's RETURN options (RFC 5267) and SORT=DISPLAY's keys (RFC 5957).
type SessionSort interface {
	Session

	// Sort returns the numbers (of kind) of the messages matching
	// criteria, ordered by the sort criteria.
	Sort(kind NumKind, sortCriteria []imapsort.Criterion, criteria *imap.SearchCriteria) ([]uint32, error)
}

// The THREAD capabilities (RFC 5256), one per algorithm; the server
// accepts THREAD with the algorithms its Caps list.
const (
	CapThreadReferences     imap.Cap = "THREAD=REFERENCES"
	CapThreadOrderedSubject imap.Cap = "THREAD=ORDEREDSUBJECT"
)

// SessionThread is an IMAP session which supports THREAD (RFC 5256).
type SessionThread interface {
	Session

	// Thread returns the threads of the messages matching criteria.
	Thread(kind NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imapsort.Thread, error)
}

// readSearchProgram reads "charset 1*(SP search-key)", the search part of
// SORT and THREAD, where the charset is not optional.
func readSearchProgram(dec *imapwire.Decoder) (*imap.SearchCriteria, error) {
	var charset string
	if !dec.ExpectAString(&charset) || !dec.ExpectSP() {
		return nil, dec.Err()
	}
	switch strings.ToUpper(charset) {
	case "US-ASCII", "UTF-8":
	default:
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeBadCharset,
			Text: "Only US-ASCII and UTF-8 are supported charsets",
		}
	}
	var criteria imap.SearchCriteria
	for {
		if err := readSearchKey(&criteria, dec); err != nil {
			return nil, err
		}
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectCRLF() {
		return nil, dec.Err()
	}
	return &criteria, nil
}

func (c *Conn) handleSort(tag string, dec *imapwire.Decoder, numKind NumKind) error {
	session, ok := c.session.(SessionSort)
	if !ok {
		return newClientBugError("Unknown command")
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var (
		atom     string
		options  imap.SearchOptions
		ext      searchReturnExt
		extended bool
	)
	if dec.Atom(&atom) {
		if !strings.EqualFold(atom, "RETURN") {
			return newClientBugError("Expected sort criteria or RETURN")
		}
		if err := readSearchReturnOpts(dec, &options, &ext); err != nil {
			return err
		}
		if options.ReturnSave || ext.update {
			return newClientBugError("SORT RETURN (SAVE) and (UPDATE) are not supported")
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		extended = true
	}
	var sortCriteria []imapsort.Criterion
	err := dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		var crit imapsort.Criterion
		if strings.EqualFold(name, "REVERSE") {
			crit.Reverse = true
			if !dec.ExpectSP() || !dec.ExpectAtom(&name) {
				return dec.Err()
			}
		}
		key, ok := imapsort.ParseKey(name)
		if !ok {
			return newClientBugError("Unknown sort key " + name)
		}
		crit.Key = key
		sortCriteria = append(sortCriteria, crit)
		return nil
	})
	if err != nil {
		return err
	}
	if len(sortCriteria) == 0 {
		return newClientBugError("Empty sort criteria")
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	criteria, err := readSearchProgram(dec)
	if err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	nums, err := session.Sort(numKind, sortCriteria, criteria)
	if err != nil {
		return err
	}

	enc := newResponseEncoder(c)
	defer enc.end()
	if !extended {
		enc.Atom("*").SP().Atom("SORT")
		for _, n := range nums {
			enc.SP().Number(n)
		}
		return enc.CRLF()
	}
	// ESORT (RFC 5267): MIN and MAX are the first and last in sort
	// order, ALL lists them in that order.
	if !options.ReturnMin && !options.ReturnMax && !options.ReturnAll && !options.ReturnCount && ext.partial == nil {
		options.ReturnAll = true
	}
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if numKind == NumKindUID {
		enc.SP().Atom("UID")
	}
	if len(nums) > 0 {
		if options.ReturnMin {
			enc.SP().Atom("MIN").SP().Number(nums[0])
		}
		if options.ReturnMax {
			enc.SP().Atom("MAX").SP().Number(nums[len(nums)-1])
		}
		if options.ReturnAll {
			enc.SP().Atom("ALL").SP().Atom(orderedSet(nums))
		}
	}
	if options.ReturnCount {
		enc.SP().Atom("COUNT").SP().Number(uint32(len(nums)))
	}
	if p := ext.partial; p != nil {
		// Positions in sort order (RFC 5267 4.4).
		enc.SP().Atom("PARTIAL").SP().Special('(').Number(p[0]).Special(':').Number(p[1]).SP()
		if lo, hi := int(p[0])-1, min(int(p[1]), len(nums)); lo < hi {
			enc.Atom(orderedSet(nums[lo:hi]))
		} else {
			enc.NIL()
		}
		enc.Special(')')
	}
	return enc.CRLF()
}

// orderedSet writes nums as a sequence-set that keeps their order:
// ascending runs of consecutive numbers become ranges (5,3:4,2,1).
func orderedSet(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

func (c *Conn) handleThread(dec *imapwire.Decoder, numKind NumKind) error {
	session, ok := c.session.(SessionThread)
	if !ok {
		return newClientBugError("Unknown command")
	}
	var name string
	if !dec.ExpectSP() || !dec.ExpectAtom(&name) || !dec.ExpectSP() {
		return dec.Err()
	}
	algorithm := imap.ThreadAlgorithm(strings.ToUpper(name))
	criteria, err := readSearchProgram(dec)
	if err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	if !c.server.options.caps().Has(imap.Cap("THREAD=" + string(algorithm))) {
		return newClientBugError("Unknown threading algorithm " + name)
	}
	threads, err := session.Thread(numKind, algorithm, criteria)
	if err != nil {
		return err
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("THREAD")
	if len(threads) > 0 {
		enc.SP()
		for _, t := range threads {
			writeThread(enc.Encoder, t)
		}
	}
	return enc.CRLF()
}

// writeThread writes one thread-list (RFC 5256 4): a message with one
// child continues the chain, several children are nested lists, and a
// dummy is a list of its children's lists.
func writeThread(enc *imapwire.Encoder, t imapsort.Thread) {
	enc.Special('(')
	if t.Num != 0 {
		enc.Number(t.Num)
		for len(t.Children) == 1 && t.Children[0].Num != 0 {
			t = t.Children[0]
			enc.SP().Number(t.Num)
		}
		if len(t.Children) > 0 {
			enc.SP()
		}
	}
	for _, ch := range t.Children {
		writeThread(enc, ch)
	}
	enc.Special(')')
}

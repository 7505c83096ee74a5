package imapserver

// CONTEXT=SEARCH (RFC 5267): SEARCH RETURN (PARTIAL m:n), (UPDATE) with
// the live ESEARCH ADDTO / REMOVEFROM updates a session sends as the
// result changes, and CANCELUPDATE. CONTEXT is accepted as the hint it is.

import (
	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver/imapwire"
)

// CapContextSearch is RFC 5267's CONTEXT=SEARCH (go-imap has no constant).
const CapContextSearch imap.Cap = "CONTEXT=SEARCH"

// SessionSearchContext is a session serving CONTEXT=SEARCH's UPDATE.
// Advertise CONTEXT=SEARCH only with a session that implements it.
type SessionSearchContext interface {
	// WatchSearch keeps the SEARCH just answered under tag up to date:
	// the session sends Conn.WriteSearchUpdate whenever messages enter
	// or leave its result (REMOVEFROM before the EXPUNGE of a message,
	// ADDTO after the EXISTS of one), until CancelSearch or the mailbox
	// is closed.
	WatchSearch(tag string, kind NumKind, criteria *imap.SearchCriteria) error
	// CancelSearch ends the updates of the searches tags (CANCELUPDATE).
	CancelSearch(tags []string) error
}

// searchReturnExt are the RFC 5267 return options imap.SearchOptions
// lacks.
type searchReturnExt struct {
	update  bool
	partial *[2]uint32 // first and last position, 1-based, ordered
}

func readSearchPartial(dec *imapwire.Decoder) (*[2]uint32, error) {
	var lo, hi uint32
	if !dec.ExpectSP() || !dec.ExpectNumber(&lo) || !dec.ExpectSpecial(':') || !dec.ExpectNumber(&hi) {
		return nil, dec.Err()
	}
	if lo == 0 || hi == 0 {
		return nil, newClientBugError("PARTIAL positions start at 1")
	}
	return &[2]uint32{min(lo, hi), max(lo, hi)}, nil
}

// partialOf returns the messages at positions p[0]..p[1] of all.
func partialOf(all imap.NumSet, p *[2]uint32) imap.NumSet {
	var nums []uint32
	switch set := all.(type) {
	case imap.SeqSet:
		nums, _ = set.Nums()
	case imap.UIDSet:
		uids, _ := set.Nums()
		for _, u := range uids {
			nums = append(nums, uint32(u))
		}
	}
	var out imap.SeqSet
	for i := p[0]; i <= p[1] && int(i) <= len(nums); i++ {
		out.AddNum(nums[i-1])
	}
	if _, ok := all.(imap.UIDSet); ok {
		var uids imap.UIDSet
		for _, r := range out {
			uids = append(uids, imap.UIDRange{Start: imap.UID(r.Start), Stop: imap.UID(r.Stop)})
		}
		return uids
	}
	return out
}

// WriteSearchUpdate writes an unsolicited ESEARCH ADDTO (addTo) or
// REMOVEFROM of set for the SEARCH tag (RFC 5267 4.3). Search results
// are in ascending order, so the position is 0 (the client places them).
func (c *Conn) WriteSearchUpdate(tag string, kind NumKind, addTo bool, set imap.NumSet) error {
	if isNumSetEmpty(set) {
		return nil
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if kind == NumKindUID {
		enc.SP().Atom("UID")
	}
	if addTo {
		enc.SP().Atom("ADDTO")
	} else {
		enc.SP().Atom("REMOVEFROM")
	}
	enc.SP().Special('(').Number(0).SP().NumSet(set).Special(')')
	return enc.CRLF()
}

func (c *Conn) handleCancelUpdate(dec *imapwire.Decoder) error {
	var tags []string
	for dec.SP() {
		var tag string
		if !dec.ExpectString(&tag) {
			return dec.Err()
		}
		tags = append(tags, tag)
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if len(tags) == 0 {
		return newClientBugError("CANCELUPDATE needs a tag")
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	sc, ok := c.session.(SessionSearchContext)
	if !ok {
		return newClientBugError("CANCELUPDATE is not supported")
	}
	return sc.CancelSearch(tags)
}

package imapserver

// CONDSTORE and QRESYNC (RFC 7162): the wire side. The session keeps the
// mod-sequences (SessionCondStore); this file holds what the commands
// share: the enabled state, the HIGHESTMODSEQ told at the first
// CONDSTORE-enabling command, VANISHED responses and the tagged OK code
// of a conditional STORE.

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver/imapwire"
)

// SessionCondStore is a session serving CONDSTORE and QRESYNC. Advertise
// CapCondStore and CapQResync only with a session that implements it.
type SessionCondStore interface {
	// HighestModSeq is the selected mailbox's HIGHESTMODSEQ.
	HighestModSeq() uint64
	// Resync answers the QRESYNC parameters of SELECT or EXAMINE, after
	// the command's untagged data and before its tagged OK: VANISHED
	// (EARLIER) for the known UIDs expunged since params.ModSeq, then a
	// FETCH (UID FLAGS MODSEQ) of every message changed since.
	Resync(w *FetchWriter, params *QResyncParams) error
}

// QResyncParams are SELECT's (QRESYNC (...)) parameters.
type QResyncParams struct {
	UIDValidity uint32
	ModSeq      uint64
	KnownUIDs   imap.UIDSet // nil: every UID
	// SeqMatch pairs message sequence numbers with the UIDs the client
	// had for them (both nil if not given).
	SeqMatchSeqs imap.SeqSet
	SeqMatchUIDs imap.UIDSet
}

// readModifiers reads an optional " (name [args] ...)" list (SELECT
// parameters, FETCH modifiers), calling each with the upper-cased name;
// each reads its own arguments.
func readModifiers(dec *imapwire.Decoder, each func(name string) error) error {
	if !dec.SP() {
		return nil
	}
	return dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		return each(strings.ToUpper(name))
	})
}

// condStore reports whether the client enabled CONDSTORE (or QRESYNC,
// which implies it).
func (c *Conn) condStore() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return c.enabled.Has(imap.CapCondStore)
}

func (c *Conn) supportsCondStore() bool {
	_, ok := c.session.(SessionCondStore)
	return ok && c.server.options.caps().Has(imap.CapCondStore)
}

// enableCondStore is a CONDSTORE-enabling command (RFC 7162 3.1): from now
// on FETCH responses carry MODSEQ, and in the selected state the first
// such command tells the mailbox's HIGHESTMODSEQ.
func (c *Conn) enableCondStore() error {
	if !c.supportsCondStore() {
		return newClientBugError("CONDSTORE is not supported")
	}
	c.mutex.Lock()
	was := c.enabled.Has(imap.CapCondStore)
	c.enabled[imap.CapCondStore] = struct{}{}
	c.mutex.Unlock()
	if was || c.state != imap.ConnStateSelected {
		return nil
	}
	return c.writeHighestModSeq(c.session.(SessionCondStore).HighestModSeq())
}

// writeHighestModSeq writes OK [HIGHESTMODSEQ n], or OK [NOMODSEQ] for a
// mailbox without mod-sequences (n 0).
func (c *Conn) writeHighestModSeq(n uint64) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("OK").SP()
	if n == 0 {
		enc.Special('[').Atom("NOMODSEQ").Special(']').SP().Text("No permanent modsequences")
		return enc.CRLF()
	}
	enc.Special('[').Atom("HIGHESTMODSEQ").SP().ModSeq(n).Special(']')
	enc.SP().Text("Highest")
	return enc.CRLF()
}

func (c *Conn) writeVanished(uids imap.UIDSet, earlier bool) error {
	if len(uids) == 0 {
		return nil
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("VANISHED").SP()
	if earlier {
		enc.Special('(').Atom("EARLIER").Special(')').SP()
	}
	enc.NumSet(uids)
	return enc.CRLF()
}

// setOK sets the tagged OK of the command being run (STORE's [MODIFIED]).
func (c *Conn) setOK(code imap.ResponseCode, text string) {
	c.okResp = &imap.StatusResponse{Type: imap.StatusResponseTypeOK, Code: code, Text: text}
}

// WriteVanished tells a QRESYNC client that messages are expunged
// (RFC 7162 3.2.10), instead of EXPUNGE.
func (w *ExpungeWriter) WriteVanished(uids imap.UIDSet) error {
	if w.conn == nil {
		return nil
	}
	return w.conn.writeVanished(uids, false)
}

// WriteVanished is EXPUNGE for a QRESYNC client.
func (w *MoveWriter) WriteVanished(uids imap.UIDSet) error {
	return w.conn.writeVanished(uids, false)
}

// WriteVanished is EXPUNGE for a QRESYNC client.
func (w *UpdateWriter) WriteVanished(uids imap.UIDSet) error {
	if len(uids) == 0 {
		return nil
	}
	if !w.allowExpunge {
		return errExpungeNotAllowed
	}
	return w.conn.writeVanished(uids, false)
}

// WriteVanished writes VANISHED (EARLIER): expunges the client missed
// (UID FETCH (CHANGEDSINCE n VANISHED), SELECT (QRESYNC ...)).
func (w *FetchWriter) WriteVanished(uids imap.UIDSet) error {
	return w.conn.writeVanished(uids, true)
}

// CreateMessage writes an unsolicited FETCH response.
//
// FetchResponseWriter.Close must be called.
func (w *UpdateWriter) CreateMessage(seqNum uint32) *FetchResponseWriter {
	return (&FetchWriter{conn: w.conn}).CreateMessage(seqNum)
}

// WriteModSeq writes the message's MODSEQ.
func (w *FetchResponseWriter) WriteModSeq(n uint64) {
	w.writeItemSep()
	w.enc.Atom("MODSEQ").SP().Special('(').ModSeq(n).Special(')')
}

// Vanished reports whether UID FETCH asked for VANISHED (EARLIER) of the
// messages expunged since CHANGEDSINCE (QRESYNC).
func (w *FetchWriter) Vanished() bool { return w.vanished }

// UnchangedSince is STORE's UNCHANGEDSINCE, if given (0 is a valid value:
// it fails for every message).
func (w *FetchWriter) UnchangedSince() (uint64, bool) { return w.unchangedSince, w.conditional }

// SetModified makes STORE's tagged OK say which messages were not
// changed because they changed after UNCHANGEDSINCE ([MODIFIED set]).
func (w *FetchWriter) SetModified(set imap.NumSet) {
	w.conn.setOK(imap.ResponseCode("MODIFIED "+set.String()), "Conditional STORE failed")
}

// CondStore reports whether FETCH responses must carry MODSEQ.
func (w *FetchWriter) CondStore() bool { return w.conn.condStore() }

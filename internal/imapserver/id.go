package imapserver

import (
	"github.com/emersion/go-imap/v2"
	"pfrouter/internal/imapserver/imapwire"
)

// serverID is what ID answers (RFC 2971) when the server advertises ID.
var serverID = []string{"name", "pfrouter"}

// handleID reads ID's parameter list (NIL or string pairs; the client's
// values are not used) and answers with the server's identity (RFC 2971).
func (c *Conn) handleID(dec *imapwire.Decoder) error {
	if !c.server.options.caps().Has(imap.CapID) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	n := 0
	isList, err := dec.List(func() error {
		var s string
		if !dec.ExpectNString(&s) {
			return dec.Err()
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if !isList && !dec.ExpectNIL() {
		return dec.Err()
	}
	if n%2 != 0 || n > 60 {
		return newClientBugError("ID takes at most 30 field/value pairs")
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ID").SP().List(len(serverID), func(i int) { enc.String(serverID[i]) })
	return enc.CRLF()
}

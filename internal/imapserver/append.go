package imapserver

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	internal "pfrouter/internal/imapserver/imapint"
	"pfrouter/internal/imapserver/imapwire"
)

// defaultAppendLimit is the default maximum size of an APPEND payload.
const defaultAppendLimit = 100 * 1024 * 1024 // 100MiB

// SessionMultiAppend is an IMAP session which supports MULTIAPPEND
// (RFC 3502). Every APPEND, of one message or several, then runs as a
// transaction that stores all its messages or none.
type SessionMultiAppend interface {
	Session

	// BeginAppend starts an APPEND to mailbox. It is called before the
	// first literal is accepted, so a missing mailbox is refused before
	// the client sends anything.
	BeginAppend(mailbox string) (AppendTx, error)
}

// AppendTx receives the messages of one APPEND command.
type AppendTx interface {
	// Add receives one message; it reads r to its end or fails.
	Add(r imap.LiteralReader, options *imap.AppendOptions) error
	// Commit stores every message added, or none of them.
	Commit() (*MultiAppendData, error)
	// Abort drops the messages added; the command failed.
	Abort()
}

// MultiAppendData is the APPENDUID of an APPEND (RFC 4315: a UID set
// when there were several messages).
type MultiAppendData struct {
	UIDValidity uint32
	UIDs        imap.UIDSet
}

func (c *Conn) handleAppend(tag string, dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectSP() {
		return dec.Err()
	}
	multi, isMulti := c.session.(SessionMultiAppend)
	var (
		tx     AppendTx
		data   *imap.AppendData
		failed error // the first message's error: the rest is read and dropped
	)
	abort := func() {
		if tx != nil {
			tx.Abort()
		}
	}
	for n := 0; ; n++ {
		var options imap.AppendOptions
		hasFlagList, err := dec.List(func() error {
			flag, err := internal.ExpectFlag(dec)
			if err != nil {
				return err
			}
			options.Flags = append(options.Flags, flag)
			return nil
		})
		if err != nil {
			abort()
			return err
		}
		if hasFlagList && !dec.ExpectSP() {
			abort()
			return dec.Err()
		}

		t, err := internal.DecodeDateTime(dec)
		if err != nil {
			abort()
			return err
		}
		if !t.IsZero() && !dec.ExpectSP() {
			abort()
			return dec.Err()
		}
		options.Time = t

		var dataExt string
		if !dec.Special('~') && dec.Atom(&dataExt) { // ignore literal8 prefix if any for BINARY
			switch strings.ToUpper(dataExt) {
			case "UTF8":
				// '~' is the literal8 prefix
				if !dec.ExpectSP() || !dec.ExpectSpecial('(') || !dec.ExpectSpecial('~') {
					abort()
					return dec.Err()
				}
			default:
				abort()
				return newClientBugError("Unknown APPEND data extension")
			}
		}

		lit, nonSync, err := dec.ExpectLiteralReader()
		if err != nil {
			abort()
			return err
		}

		appendLimit := int64(defaultAppendLimit)
		if appendLimitSession, ok := c.session.(SessionAppendLimit); ok {
			appendLimit = int64(appendLimitSession.AppendLimit())
		}
		if s, ok := c.session.(SessionMailboxAppendLimit); ok && c.state != imap.ConnStateNotAuthenticated {
			appendLimit = s.MailboxAppendLimit(mailbox)
		}

		if lit.Size() > appendLimit {
			abort()
			tooBig := &imap.Error{
				Type: imap.StatusResponseTypeNo,
				Code: imap.ResponseCodeTooBig,
				Text: fmt.Sprintf("Messages are limited to %v bytes in this mailbox", appendLimit),
			}
			if nonSync {
				// The client is sending the literal anyway; reading it
				// would cost what the limit protects, and not reading it
				// would take its bytes for commands: answer and hang up.
				c.writeStatusResp(tag, (*imap.StatusResponse)(tooBig))
				c.state = imap.ConnStateLogout
				return c.Bye("APPEND literal too big, closing")
			}
			return tooBig
		}
		if failed == nil {
			if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
				failed = err
			}
		}
		if failed == nil && isMulti && tx == nil {
			tx, failed = multi.BeginAppend(mailbox)
		}
		if failed == nil && !isMulti && n > 0 {
			failed = newClientBugError("MULTIAPPEND is not supported")
		}
		if failed != nil && !nonSync {
			// Refused before the client sends the literal (RFC 3502:
			// the client stops at the tagged reply).
			abort()
			return failed
		}
		if err := c.acceptLiteral(lit.Size(), nonSync); err != nil {
			abort()
			return err
		}

		c.setReadTimeout(literalReadTimeout)
		var addErr error
		switch {
		case failed != nil:
		case isMulti:
			addErr = tx.Add(lit, &options)
		default:
			data, addErr = c.session.Append(mailbox, lit, &options)
		}
		_, discardErr := io.Copy(io.Discard, lit)
		c.setReadTimeout(cmdReadTimeout)
		if discardErr != nil {
			// The literal was cut off: the connection is gone.
			abort()
			return discardErr
		}
		if failed == nil {
			failed = addErr
		}
		if dataExt != "" && !dec.ExpectSpecial(')') {
			abort()
			return dec.Err()
		}
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectCRLF() {
		abort()
		return dec.Err()
	}
	if failed != nil {
		abort()
		return failed
	}
	var uids imap.UIDSet
	var uidValidity uint32
	if isMulti {
		md, err := tx.Commit()
		if err != nil {
			return err
		}
		if md != nil {
			uids, uidValidity = md.UIDs, md.UIDValidity
		}
	} else if data != nil {
		uids.AddNum(data.UID)
		uidValidity = data.UIDValidity
	}
	if err := c.poll("APPEND"); err != nil {
		return err
	}
	return c.writeAppendOK(tag, uidValidity, uids)
}

func (c *Conn) writeAppendOK(tag string, uidValidity uint32, uids imap.UIDSet) error {
	enc := newResponseEncoder(c)
	defer enc.end()

	enc.Atom(tag).SP().Atom("OK").SP()
	if len(uids) > 0 {
		enc.Special('[')
		enc.Atom("APPENDUID").SP().Number(uidValidity).SP().NumSet(uids)
		enc.Special(']').SP()
	}
	enc.Text("APPEND completed")
	return enc.CRLF()
}

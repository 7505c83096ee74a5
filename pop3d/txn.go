package pop3d

import (
	"io"
)

// This file holds the TRANSACTION and UPDATE states (RFC 1939 §5, §6).

// stat counts the messages not marked deleted and their octets.
func (ss *session) stat() (n int, size int64) {
	for i, m := range ss.msgs {
		if !ss.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

// message resolves a message-number argument; on failure it has answered.
func (ss *session) message(arg string) (int, bool) {
	n, ok := parseNumber(arg)
	if !ok {
		ss.badCommand("", "invalid message number")
		return 0, false
	}
	if n < 1 || n > len(ss.msgs) {
		ss.replyErr("", "no such message")
		return 0, false
	}
	if ss.deleted[n-1] {
		ss.replyErr("", "message already deleted")
		return 0, false
	}
	return n - 1, true
}

func (ss *session) cmdStat(cmd command) {
	if len(cmd.Args) != 0 {
		ss.badCommand("", "STAT takes no arguments")
		return
	}
	n, size := ss.stat()
	ss.reply("+OK %d %d", n, size)
}

func (ss *session) cmdList(cmd command) {
	switch len(cmd.Args) {
	case 0:
		n, size := ss.stat()
		ss.reply("+OK %d messages (%d octets)", n, size)
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				ss.reply("%d %d", i+1, m.Size)
			}
		}
		ss.reply(".")
	case 1:
		if i, ok := ss.message(cmd.Args[0]); ok {
			ss.reply("+OK %d %d", i+1, ss.msgs[i].Size)
		}
	default:
		ss.badCommand("", "LIST takes at most one argument")
	}
}

func (ss *session) cmdUIDL(cmd command) {
	switch len(cmd.Args) {
	case 0:
		ss.reply("+OK unique-id listing follows")
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				ss.reply("%d %s", i+1, m.UID)
			}
		}
		ss.reply(".")
	case 1:
		if i, ok := ss.message(cmd.Args[0]); ok {
			ss.reply("+OK %d %s", i+1, ss.msgs[i].UID)
		}
	default:
		ss.badCommand("", "UIDL takes at most one argument")
	}
}

func (ss *session) cmdRetr(cmd command) {
	if len(cmd.Args) != 1 {
		ss.badCommand("", "RETR takes one message number")
		return
	}
	if i, ok := ss.message(cmd.Args[0]); ok {
		ss.sendMessage(i, -1)
	}
}

func (ss *session) cmdTop(cmd command) {
	if len(cmd.Args) != 2 {
		ss.badCommand("", "TOP takes a message number and a line count")
		return
	}
	i, ok := ss.message(cmd.Args[0])
	if !ok {
		return
	}
	lines, ok := parseNumber(cmd.Args[1])
	if !ok {
		ss.badCommand("", "invalid line count")
		return
	}
	ss.sendMessage(i, lines)
}

// sendMessage streams message i as a multi-line response; topLines < 0
// sends it whole (RETR).
func (ss *session) sendMessage(i, topLines int) {
	m := ss.msgs[i]
	rc, err := ss.md.Open(ss.ctx, m.UID)
	if err != nil {
		ss.log.Warn("opening message failed", "user", ss.user, "uid", m.UID, "err", err)
		ss.replyErr("SYS/TEMP", "cannot read message; try again later")
		return
	}
	defer rc.Close()
	if topLines < 0 {
		ss.reply("+OK %d octets", m.Size)
	} else {
		ss.reply("+OK top of message follows")
	}
	mw := newMsgWriter(ss.w, true, topLines)
	if ss.buf == nil {
		ss.buf = make([]byte, 32<<10)
	}
	buf := ss.buf
	for !mw.Done() {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if _, werr := mw.Write(buf[:n]); werr != nil {
				ss.end = true // the client is gone; nothing more to say
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// "+OK" is already out; the only honest way to stop is to
			// drop the connection, which deletes nothing.
			ss.log.Error("reading message failed mid-response; dropping connection", "user", ss.user, "uid", m.UID, "err", rerr)
			ss.end = true
			ss.conn.Close()
			return
		}
	}
	if mw.Finish() != nil {
		ss.end = true
		return
	}
	ss.reply(".")
}

func (ss *session) cmdDele(cmd command) {
	if len(cmd.Args) != 1 {
		ss.badCommand("", "DELE takes one message number")
		return
	}
	if i, ok := ss.message(cmd.Args[0]); ok {
		ss.deleted[i] = true
		ss.reply("+OK message %d deleted", i+1)
	}
}

func (ss *session) cmdRset(cmd command) {
	if len(cmd.Args) != 0 {
		ss.badCommand("", "RSET takes no arguments")
		return
	}
	clear(ss.deleted)
	n, size := ss.stat()
	ss.reply("+OK maildrop has %d messages (%d octets)", n, size)
}

func (ss *session) cmdNoop(cmd command) {
	if len(cmd.Args) != 0 {
		ss.badCommand("", "NOOP takes no arguments")
		return
	}
	ss.reply("+OK")
}

// update is the UPDATE state after QUIT (RFC 1939 §6, SPEC A6): the only
// place messages are removed.
func (ss *session) update() {
	var uids []string
	for i, d := range ss.deleted {
		if d {
			uids = append(uids, ss.msgs[i].UID)
		}
	}
	if len(uids) > 0 {
		if err := ss.md.Delete(ss.ctx, uids); err != nil {
			ss.log.Warn("deleting messages at QUIT failed", "user", ss.user, "count", len(uids), "err", err)
			ss.replyErr("SYS/TEMP", "some deleted messages not removed")
			return
		}
		ss.log.Info("messages deleted at QUIT", "user", ss.user, "count", len(uids))
	}
	n := len(ss.msgs) - len(uids)
	ss.reply("+OK %s POP3 server signing off (%d messages left)", ss.srv.opts.Hostname, n)
}

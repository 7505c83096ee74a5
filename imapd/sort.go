package imapd

import (
	"bufio"
	"bytes"
	"context"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"pfrouter/internal/imapserver"
	"pfrouter/internal/imapsort"
	"pfrouter/store"
)

// SORT and THREAD (RFC 5256) over the selected folder, personal or public
// alike: the messages SEARCH would match are read into imapsort records
// (headers parsed once per message and selection, then cached: a message
// never changes) and ordered by package imapsort. A referred folder passes
// the command to the replica's server, which is a pfrouter too.

func (s *session) Sort(kind imapserver.NumKind, sortCriteria []imapsort.Criterion, criteria *imap.SearchCriteria) ([]uint32, error) {
	if s.rsel != nil {
		return s.remoteSort(kind, sortCriteria, criteria)
	}
	msgs, err := s.sortRecords(kind, criteria)
	if err != nil {
		return nil, err
	}
	return imapsort.Sort(msgs, sortCriteria), nil
}

func (s *session) Thread(kind imapserver.NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imapsort.Thread, error) {
	if s.rsel != nil {
		return s.remoteThread(kind, algorithm, criteria)
	}
	msgs, err := s.sortRecords(kind, criteria)
	if err != nil {
		return nil, err
	}
	if algorithm == imap.ThreadOrderedSubject {
		return imapsort.OrderedSubject(msgs), nil
	}
	return imapsort.References(msgs), nil
}

// sortRecords returns the records of the messages matching criteria, in
// sequence order, numbered by kind.
func (s *session) sortRecords(kind imapserver.NumKind, criteria *imap.SearchCriteria) ([]imapsort.Message, error) {
	m := s.sel
	s.staticCriteria(criteria)
	var idx []int
	var missing []store.MessageInfo
	for i, uid := range m.uids {
		if m.ghosts[uid] {
			continue
		}
		if c := (&candidate{s: s, seq: uint32(i + 1), uid: uid}); !c.match(criteria) {
			continue
		}
		idx = append(idx, i)
		if _, ok := m.sortKeys[uid]; !ok {
			missing = append(missing, m.info[uid])
		}
	}
	if m.sortKeys == nil {
		m.sortKeys = map[uint32]*imapsort.Message{}
	}
	err := s.srv.store.BodiesOf(context.Background(), missing, func(uid uint32, body []byte, ok bool) error {
		if !ok {
			m.ghosts[uid] = true // expunged by another session meanwhile
			return nil
		}
		m.sortKeys[uid] = sortRecord(body, m.info[uid])
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]imapsort.Message, 0, len(idx))
	for _, i := range idx {
		uid := m.uids[i]
		rec, ok := m.sortKeys[uid]
		if !ok {
			continue
		}
		msg := *rec
		msg.Num = uint32(i + 1)
		if kind == imapserver.NumKindUID {
			msg.Num = uid
		}
		out = append(out, msg)
	}
	return out, nil
}

// sortRecord reads what SORT and THREAD compare from a stored message.
func sortRecord(body []byte, info store.MessageInfo) *imapsort.Message {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	if err != nil {
		h = textproto.Header{} // no parsable header: every header key is empty
	}
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	rec := &imapsort.Message{Arrival: info.Date, Size: info.Size}
	if subject, err := mh.Subject(); err == nil {
		rec.Subject = subject
	} else {
		rec.Subject = h.Get("Subject")
	}
	if t, err := mh.Date(); err == nil {
		rec.Sent = t
	}
	first := func(key string) (mailbox, display string) {
		l := imapserver.AddressList(h, key)
		if len(l) == 0 {
			// Not an address list (a bare "d"): its first word stands
			// for the mailbox, as Dovecot reads it.
			v, _, _ := strings.Cut(strings.TrimSpace(h.Get(key)), ",")
			v = strings.Trim(strings.TrimSpace(v), "<>")
			local, _, _ := strings.Cut(v, "@")
			return local, v
		}
		a := l[0]
		spec := a.Mailbox
		if a.Host != "" {
			spec += "@" + a.Host
		}
		if a.Name != "" {
			return a.Mailbox, a.Name
		}
		return a.Mailbox, spec
	}
	rec.From, rec.DisplayFrom = first("From")
	rec.To, rec.DisplayTo = first("To")
	rec.Cc, _ = first("Cc")
	if ids := imapsort.MsgIDs(h.Get("Message-Id")); len(ids) > 0 {
		rec.MessageID = ids[0]
	}
	rec.References = imapsort.MsgIDs(h.Get("References"))
	rec.InReplyTo = imapsort.MsgIDs(h.Get("In-Reply-To"))
	return rec
}

func (s *session) remoteSort(kind imapserver.NumKind, sortCriteria []imapsort.Criterion, criteria *imap.SearchCriteria) ([]uint32, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	s.remoteCriteria(criteria)
	opts := &imapclient.SortOptions{SearchCriteria: criteria}
	for _, c := range sortCriteria {
		opts.SortCriteria = append(opts.SortCriteria, imapclient.SortCriterion{Key: imapclient.SortKey(c.Key), Reverse: c.Reverse})
	}
	var nums []uint32
	err := s.do(func(c *imapclient.Client) error {
		var err error
		if kind == imapserver.NumKindUID {
			nums, err = c.UIDSort(opts).Wait()
		} else {
			nums, err = c.Sort(opts).Wait()
		}
		return err
	})
	if err != nil || kind == imapserver.NumKindUID {
		return nums, err
	}
	// Leave out messages the client has not been told of yet.
	out := nums[:0]
	for _, n := range nums {
		if n <= s.rsel.n {
			out = append(out, n)
		}
	}
	return out, nil
}

func (s *session) remoteThread(kind imapserver.NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imapsort.Thread, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	if kind == imapserver.NumKindSeq {
		// Only messages the client knows of: threads cannot be trimmed
		// afterwards without changing their shape.
		criteria.SeqNum = append(criteria.SeqNum, imap.SeqSetNum(1, max(s.rsel.n, 1)))
		if s.rsel.n == 0 {
			return nil, nil
		}
	}
	s.remoteCriteria(criteria)
	opts := &imapclient.ThreadOptions{Algorithm: algorithm, SearchCriteria: criteria}
	var data []imapclient.ThreadData
	err := s.do(func(c *imapclient.Client) error {
		var err error
		if kind == imapserver.NumKindUID {
			data, err = c.UIDThread(opts).Wait()
		} else {
			data, err = c.Thread(opts).Wait()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return fromThreadData(data), nil
}

// remoteCriteria makes "*" in sequence sets mean the client's last
// message, not the replica session's.
func (s *session) remoteCriteria(criteria *imap.SearchCriteria) {
	for i, set := range criteria.SeqNum {
		criteria.SeqNum[i] = staticSeq(set, s.rsel.n)
	}
}

// fromThreadData turns imapclient's thread lists (a chain of messages,
// then sub-threads) into imapsort trees.
func fromThreadData(data []imapclient.ThreadData) []imapsort.Thread {
	out := make([]imapsort.Thread, len(data))
	for i, d := range data {
		subs := fromThreadData(d.SubThreads)
		if len(d.Chain) == 0 {
			out[i] = imapsort.Thread{Children: subs}
			continue
		}
		// The chain's last message holds the sub-threads; each one before
		// it has the next as its only child.
		node := imapsort.Thread{Num: d.Chain[len(d.Chain)-1], Children: subs}
		for k := len(d.Chain) - 2; k >= 0; k-- {
			node = imapsort.Thread{Num: d.Chain[k], Children: []imapsort.Thread{node}}
		}
		out[i] = node
	}
	return out
}

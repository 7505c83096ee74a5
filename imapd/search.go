package imapd

import (
	"bytes"
	"context"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	usesModSeq := imapserver.SearchUsesModSeq(criteria)
	if s.rsel != nil {
		if usesModSeq {
			return nil, errNoModSeq
		}
		return s.remoteSearch(kind, criteria, options)
	}
	m := s.sel
	s.staticCriteria(criteria)
	var (
		data    imap.SearchData
		seqSet  imap.SeqSet
		uidSet  imap.UIDSet
		matched []uint32
	)
	for i, uid := range m.uids {
		if m.ghosts[uid] {
			continue
		}
		c := &candidate{s: s, seq: uint32(i + 1), uid: uid}
		if !c.match(criteria) {
			continue
		}
		uidSet.AddNum(imap.UID(uid))
		matched = append(matched, uid)
		num := uid
		if kind == imapserver.NumKindSeq {
			num = c.seq
			seqSet.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if usesModSeq {
		data.ModSeq = searchModSeq(m, matched, options)
	}
	m.lastMatch = matched
	if options != nil && options.ReturnSave {
		m.searchRes = uidSet
		if len(matched) > 0 && !options.ReturnAll && !options.ReturnCount && (options.ReturnMin || options.ReturnMax) {
			// SAVE with MIN and/or MAX alone saves just those (RFC 5182 2.1).
			m.searchRes = nil
			if options.ReturnMin {
				m.searchRes.AddNum(imap.UID(matched[0]))
			}
			if options.ReturnMax {
				m.searchRes.AddNum(imap.UID(matched[len(matched)-1]))
			}
		}
	}
	return &data, nil
}

// staticCriteria resolves "*" and "$" in sequence and UID sets.
func (s *session) staticCriteria(c *imap.SearchCriteria) {
	m := s.sel
	var last uint32
	if n := len(m.uids); n > 0 {
		last = m.uids[n-1]
	}
	seqs := c.SeqNum[:0:0]
	for _, set := range c.SeqNum {
		seqs = append(seqs, staticSeq(set, uint32(len(m.uids))))
	}
	c.SeqNum = seqs
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			c.UID[i] = m.searchRes
		} else {
			c.UID[i] = staticUID(set, last)
		}
	}
	for i := range c.Not {
		s.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		s.staticCriteria(&c.Or[i][0])
		s.staticCriteria(&c.Or[i][1])
	}
}

// candidate is one message being matched; its body is read at most once,
// and only if a criterion needs it.
type candidate struct {
	s        *session
	seq, uid uint32
	body     []byte
	loaded   bool
}

func (c *candidate) raw() []byte {
	if !c.loaded {
		c.loaded = true
		b, err := c.s.srv.store.Body(context.Background(), c.s.sel.t.ref, c.uid)
		if err == nil {
			c.body = b
		}
	}
	return c.body
}

func (c *candidate) entity() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(c.raw()))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (c *candidate) hasFlag(f imap.Flag) bool {
	m := c.s.sel
	if strings.EqualFold(string(f), `\Recent`) {
		return m.recent[c.uid]
	}
	return store.HasFlag(m.flags[c.uid], string(f))
}

func (c *candidate) match(cr *imap.SearchCriteria) bool {
	m := c.s.sel
	info := m.info[c.uid]
	for _, set := range cr.SeqNum {
		if !set.Contains(c.seq) {
			return false
		}
	}
	for _, set := range cr.UID {
		if !set.Contains(imap.UID(c.uid)) {
			return false
		}
	}
	if !matchDate(info.Date, cr.Since, cr.Before) {
		return false
	}
	if cr.ModSeq != nil && info.ModSeq < cr.ModSeq.ModSeq {
		return false
	}
	for _, f := range cr.Flag {
		if !c.hasFlag(f) {
			return false
		}
	}
	for _, f := range cr.NotFlag {
		if c.hasFlag(f) {
			return false
		}
	}
	if cr.Larger != 0 && info.Size <= cr.Larger {
		return false
	}
	if cr.Smaller != 0 && info.Size >= cr.Smaller {
		return false
	}
	if len(cr.Header) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		h := mail.Header{Header: c.entity().Header}
		for _, hf := range cr.Header {
			if !matchHeaderFields(h.FieldsByKey(hf.Key), hf.Value) && !matchAddresses(h.Header.Header, hf.Key, hf.Value) {
				return false
			}
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, cr.SentSince, cr.SentBefore) {
				return false
			}
		}
	}
	for _, text := range cr.Text {
		if !matchEntity(c.entity(), text, true) {
			return false
		}
	}
	for _, text := range cr.Body {
		if !matchEntity(c.entity(), text, false) {
			return false
		}
	}
	for i := range cr.Not {
		if c.match(&cr.Not[i]) {
			return false
		}
	}
	for i := range cr.Or {
		if !c.match(&cr.Or[i][0]) && !c.match(&cr.Or[i][1]) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, ignoring time and zone, as RFC 3501 asks.
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// addressFields are the headers SEARCH FROM/TO/CC/BCC look in.
var addressFields = map[string]bool{"from": true, "to": true, "cc": true, "bcc": true, "sender": true, "reply-to": true}

// matchAddresses matches an address header on its parsed addresses as
// well as its text: display name, addr-spec without comments, group name
// (imaptest "search-addresses": <user (comment)@ (comment) domain.org>
// is found as user@domain.org).
func matchAddresses(h textproto.Header, key, pattern string) bool {
	if pattern == "" || !addressFields[strings.ToLower(key)] {
		return false
	}
	pattern = strings.ToLower(pattern)
	for _, a := range imapserver.AddressList(h, key) {
		spec := a.Mailbox
		if a.Host != "" {
			spec += "@" + a.Host
		}
		for _, s := range []string{a.Name, spec, a.Name + " <" + spec + ">"} {
			if s != "" && strings.Contains(strings.ToLower(s), pattern) {
				return true
			}
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if includeHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(e.Body)
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), []byte(strings.ToLower(pattern)))
}

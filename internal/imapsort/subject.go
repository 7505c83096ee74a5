// Package imapsort is the ordering logic of IMAP SORT and THREAD
// (RFC 5256, with the DISPLAYFROM/DISPLAYTO keys of RFC 5957): base-subject
// extraction, message-ID lists, sort keys and the ORDEREDSUBJECT and
// REFERENCES threading algorithms, over plain message records. It does no
// I/O and knows nothing of the store: package imapd reads the headers of
// the selected messages into Message records, and internal/imapserver
// parses the commands and writes the responses.
package imapsort

import "strings"

// BaseSubject extracts the base subject of RFC 5256 section 2.1 from a
// Subject whose encoded words are already decoded (step 1's conversion to
// UTF-8 is the caller's). replyOrFwd says whether the subject marked a
// reply or forward (a "Re:", "Fwd:", "(fwd)" or "[fwd: ...]" was removed),
// which THREAD=REFERENCES uses when it merges threads by subject. The
// result is upper-cased for comparison (i;ascii-casemap on ASCII,
// simple case mapping beyond).
func BaseSubject(subject string) (base string, replyOrFwd bool) {
	s := normalizeSpace(subject)
	for {
		// (2) trailers: "(fwd)" and white space.
		for {
			if strings.HasSuffix(s, " ") {
				s = s[:len(s)-1]
			} else if n := len(s); n >= 5 && strings.EqualFold(s[n-5:], "(fwd)") {
				s, replyOrFwd = s[:n-5], true
			} else {
				break
			}
		}
		// (3)-(5) leaders, then a leading blob that leaves a non-empty
		// base, until neither applies.
		for {
			for {
				if strings.HasPrefix(s, " ") {
					s = s[1:]
				} else if n := leaderLen(s); n > 0 {
					s, replyOrFwd = s[n:], true
				} else {
					break
				}
			}
			if n := blobLen(s); n > 0 && n < len(s) {
				s = s[n:]
				continue
			}
			break
		}
		// (6) "[fwd: ...]" around the whole subject: unwrap and start over.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s, replyOrFwd = s[5:len(s)-1], true
			continue
		}
		return strings.ToUpper(s), replyOrFwd
	}
}

// normalizeSpace turns tabs, CR and LF (unfolded continuations) into
// spaces and runs of spaces into one.
func normalizeSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// blobLen is the length of a subj-blob ("[" *BLOBCHAR "]" *WSP) at the
// start of s, or 0.
func blobLen(s string) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	i := 1
	for i < len(s) && s[i] != '[' && s[i] != ']' && s[i] != 0 {
		i++
	}
	if i >= len(s) || s[i] != ']' {
		return 0
	}
	i++
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

// leaderLen is the length of a subj-leader made of blobs and a subj-refwd
// (*subj-blob ("re" / "fw" ["d"]) *WSP [subj-blob] ":") at the start of
// s, or 0. Blobs not followed by a subj-refwd are not a leader.
func leaderLen(s string) int {
	i := 0
	for {
		n := blobLen(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	for _, word := range [...]string{"re", "fwd", "fw"} {
		if n := refwdLen(s[i:], word); n > 0 {
			return i + n
		}
	}
	return 0
}

func refwdLen(s, word string) int {
	if len(s) < len(word) || !strings.EqualFold(s[:len(word)], word) {
		return 0
	}
	i := len(word)
	for i < len(s) && s[i] == ' ' {
		i++
	}
	i += blobLen(s[i:])
	if i < len(s) && s[i] == ':' {
		return i + 1
	}
	return 0
}

// MsgIDs returns the message IDs ("<id-left@id-right>", brackets
// dropped) in a Message-ID, References or In-Reply-To value, in order.
// Comments and text between IDs are skipped; an ID without "@" or with
// white space inside is not valid (RFC 5256 uses only valid IDs).
func MsgIDs(s string) []string {
	var ids []string
	for {
		open := strings.IndexByte(s, '<')
		if open < 0 {
			return ids
		}
		s = s[open+1:]
		end := strings.IndexAny(s, "<>")
		if end < 0 {
			return ids
		}
		if s[end] == '<' { // "<a <b@c>": the first is not an ID
			s = s[end:]
			continue
		}
		id := s[:end]
		s = s[end+1:]
		if at := strings.IndexByte(id, '@'); at > 0 && at < len(id)-1 && !strings.ContainsAny(id, " \t\r\n") {
			ids = append(ids, id)
		}
	}
}

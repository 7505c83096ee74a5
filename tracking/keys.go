package tracking

import (
	"encoding/binary"
	"time"
)

// Key layout in the badger database:
//
//	'e' | time (8 bytes, big-endian Unix nanoseconds) | seq (8 bytes)   -> event JSON
//	'i' | normalized id | 0x00 | time | seq                             -> empty
//
// The index keys end with the event key's suffix, so a prefix scan of one
// id yields its events already in time order, ties in append order.
const (
	prefixEvent = 'e'
	prefixIndex = 'i'
	suffixLen   = 16
)

func eventSuffix(t time.Time, seq uint64) [suffixLen]byte {
	var s [suffixLen]byte
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	binary.BigEndian.PutUint64(s[:8], uint64(ns))
	binary.BigEndian.PutUint64(s[8:], seq)
	return s
}

func eventKey(suffix []byte) []byte {
	k := make([]byte, 0, 1+suffixLen)
	k = append(k, prefixEvent)
	return append(k, suffix...)
}

func indexPrefix(id string) []byte {
	k := make([]byte, 0, 2+len(id)+suffixLen)
	k = append(k, prefixIndex)
	k = append(k, id...)
	return append(k, 0)
}

func indexKey(id string, suffix []byte) []byte {
	return append(indexPrefix(id), suffix...)
}

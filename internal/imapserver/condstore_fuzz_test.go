package imapserver

import (
	"bufio"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver/imapwire"
)

func decoderOf(s string) *imapwire.Decoder {
	return imapwire.NewDecoder(bufio.NewReader(strings.NewReader(s)), imapwire.ConnSideServer)
}

// FuzzQResyncParams: SELECT's QRESYNC parameters never panic, and what
// parses has a UIDVALIDITY and a mod-sequence (RFC 7162 3.2.5).
func FuzzQResyncParams(f *testing.F) {
	for _, s := range []string{
		" (67890007 20050715194045000 41,43:211,214:541)",
		" (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997))",
		" (1 1)", " (0 5)", " (1 0)", " (1 2 3 4)", " (1 2 (1 2)", " (1 2 1:*)", " (1 99999999999999999999)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := readQResyncParams(decoderOf(s))
		if err == nil && p != nil && (p.UIDValidity == 0 || p.ModSeq == 0) {
			t.Fatalf("%q parsed as %+v", s, p)
		}
	})
}

// FuzzSearchModSeq: the MODSEQ search key (with or without its metadata
// entry) never panics, and what parses is a MODSEQ criterion.
func FuzzSearchModSeq(f *testing.F) {
	for _, s := range []string{
		` 620162338`, ` "/flags/\\draft" all 620162338`, ` "/flags/\\seen" priv 0`, ` "x" bogus 5`,
		` "/flags/\\seen"`, ` 18446744073709551616`, ` -1`, ` "" shared 1`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c imap.SearchCriteria
		if err := readSearchKeyWithAtom(&c, decoderOf(s), "MODSEQ"); err == nil && c.ModSeq == nil {
			t.Fatalf("%q parsed without a MODSEQ criterion", s)
		}
	})
}

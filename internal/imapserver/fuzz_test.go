package imapserver

import (
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// FuzzAddressList: any header value parses without panicking, groups are
// balanced (every start marker has its end marker) and members have both
// mailbox and host.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
		"group:;, group2: (foo) ;",
		"<user-from (comment)@ (comment) domain.org>",
		"<@route:user@domain>",
		`"Colon: Name" <a@b.example>, c@d.example`,
		"unterminated: a@b", "((((", `"\`, "<<>>;;::,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n") {
			return
		}
		var h textproto.Header
		h.Set("To", v)
		open := false
		for _, a := range AddressList(h, "To") {
			switch {
			case a.Host == "" && a.Mailbox != "": // group start
				if open {
					t.Fatalf("%q: nested group start %+v", v, a)
				}
				open = true
			case a.Host == "" && a.Mailbox == "": // group end
				if !open {
					t.Fatalf("%q: group end without start", v)
				}
				open = false
			case a.Mailbox == "":
				t.Fatalf("%q: member without mailbox %+v", v, a)
			}
		}
		if open {
			t.Fatalf("%q: group left open", v)
		}
	})
}

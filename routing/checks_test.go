package routing_test

import (
	"strings"
	"testing"

	"pfrouter/routing"
)

// checksOrg has folders exercising R11, R15 and R17.
func checksOrg(t *testing.T, mode string) *env {
	return build(t, spec{
		Mode:   mode,
		Stores: map[string][]string{"a1": {pub("a1-pub", jan), "{name: a1-app, kind: public, hierarchy: App, created: \"" + jan + "\"}"}},
		Folders: folder("/Open", "open@x.example", "a1-pub") +
			"\n  - {path: /Off, hierarchy: PF, addresses: [off@x.example], mail_enabled: false, replicas: [a1-pub]}" +
			"\n  - {path: /NativeDefault, hierarchy: PF, created_mode: native, addresses: [native@x.example], replicas: [a1-pub]}" +
			"\n  - {path: /AppDefault, hierarchy: App, addresses: [app@x.example], replicas: [a1-app]}" +
			"\n  - {path: /AppOn, hierarchy: App, addresses: [appon@x.example], mail_enabled: true, replicas: [a1-app]}" +
			"\n  - {path: /Small, hierarchy: PF, addresses: [small@x.example], max_message_size: 1KB, replicas: [a1-pub]}" +
			"\n  - {path: /Accept, hierarchy: PF, addresses: [accept@x.example], accept_from: [ok@x.example, alice], replicas: [a1-pub]}" +
			"\n  - {path: /Reject, hierarchy: PF, addresses: [reject@x.example], reject_from: [spam@x.example, bob], replicas: [a1-pub]}" +
			"\n  - {path: /Board, hierarchy: PF, addresses: [board@x.example], permissions: {Default: Reviewer, Anonymous: None, alice: Owner}, replicas: [a1-pub]}" +
			"\n  - {path: /Authors, hierarchy: PF, addresses: [authors@x.example], permissions: {Default: Author}, replicas: [a1-pub]}",
		Users: "\n  - {name: alice, addresses: [alice@x.example], mailbox_store: a1-mbx, password: pw}" +
			"\n  - {name: bob, addresses: [bob@x.example], mailbox_store: a1-mbx, password: pw}",
	})
}

type checkCase struct {
	name       string
	rcpt       string
	sender     string
	senderUser string
	size       int64
	code       string // "" means delivered
}

func runChecks(t *testing.T, e *env, cases []checkCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.decideIn(routing.Input{At: "a1", Recipient: c.rcpt, Sender: c.sender, SenderUser: c.senderUser, Size: c.size})
			if c.code == "" {
				wantDeliver(t, d, d.Store)
				return
			}
			wantOutcome(t, d, routing.NDR, c.code)
			// The same refusal is what SMTP gives at RCPT time.
			_, chk := routing.CheckRecipient(e.dir.Snapshot(), routing.Input{Recipient: c.rcpt, Sender: c.sender, SenderUser: c.senderUser, Size: c.size})
			if chk == nil || chk.Code != c.code || !chk.Perm {
				t.Fatalf("CheckRecipient = %v, want permanent %s", chk, c.code)
			}
		})
	}
}

// R15: only mail-enabled folders accept mail, with the mode defaults.
func TestR15MailDisabledRefused(t *testing.T) {
	e := checksOrg(t, "mixed")
	runChecks(t, e, []checkCase{
		{name: "mixed-mode MAPI folder is mail-enabled", rcpt: "open@x.example"},
		{name: "explicitly mail-disabled folder", rcpt: "off@x.example", code: "5.1.1"},
		{name: "native-created MAPI folder defaults to disabled", rcpt: "native@x.example", code: "5.1.1"},
		{name: "application TLH folder defaults to disabled", rcpt: "app@x.example", code: "5.1.1"},
		{name: "application TLH folder explicitly enabled", rcpt: "appon@x.example"},
	})
	d := e.decide("a1", "off@x.example")
	if !strings.Contains(d.Reason, "R15") {
		t.Fatalf("reason %q does not name R15", d.Reason)
	}
	// A native-mode org: a folder created in mixed mode stays mail-enabled.
	e = build(t, spec{
		Mode:   "native",
		Stores: map[string][]string{"a1": {pub("a1-pub", jan)}},
		Folders: "\n  - {path: /Old, hierarchy: PF, created_mode: mixed, addresses: [old@x.example], replicas: [a1-pub]}" +
			"\n  - {path: /New, hierarchy: PF, addresses: [new@x.example], replicas: [a1-pub]}",
	})
	runChecks(t, e, []checkCase{
		{name: "created in mixed mode stays enabled", rcpt: "old@x.example"},
		{name: "native default is disabled", rcpt: "new@x.example", code: "5.1.1"},
	})
}

// R11: message size limit and accept/reject lists of the folder.
func TestR11LimitsAndRestrictions(t *testing.T) {
	e := checksOrg(t, "mixed")
	runChecks(t, e, []checkCase{
		{name: "size at the limit", rcpt: "small@x.example", size: 1024},
		{name: "size over the limit", rcpt: "small@x.example", size: 1025, code: "5.2.3"},
		{name: "size unknown yet", rcpt: "small@x.example", size: 0},
		{name: "accept_from listed address", rcpt: "accept@x.example", sender: "OK@x.example"},
		{name: "accept_from listed user", rcpt: "accept@x.example", sender: "alice@x.example", senderUser: "alice"},
		{name: "accept_from other sender", rcpt: "accept@x.example", sender: "other@x.example", code: "5.7.1"},
		{name: "accept_from null sender", rcpt: "accept@x.example", sender: "", code: "5.7.1"},
		{name: "reject_from listed address", rcpt: "reject@x.example", sender: "spam@x.example", code: "5.7.1"},
		{name: "reject_from listed user", rcpt: "reject@x.example", sender: "b@y.example", senderUser: "bob", code: "5.7.1"},
		{name: "reject_from other sender", rcpt: "reject@x.example", sender: "fine@x.example"},
		// Issue 10 item 7: case, a trailing dot and a subaddress do not
		// get a listed sender past the lists.
		{name: "reject_from upper case and trailing dot", rcpt: "reject@x.example", sender: "SPAM@X.EXAMPLE.", code: "5.7.1"},
		{name: "reject_from subaddress", rcpt: "reject@x.example", sender: "spam+x@x.example", code: "5.7.1"},
		{name: "reject_from subaddress of another local part", rcpt: "reject@x.example", sender: "spammer+x@x.example"},
		{name: "accept_from subaddress and case", rcpt: "accept@x.example", sender: "Ok+list@X.example."},
	})
}

func TestNormalizeSender(t *testing.T) {
	for in, want := range map[string]string{
		"SPAM@CONTOSO.example.":  "spam@contoso.example",
		"spam+x@contoso.example": "spam@contoso.example",
		"<a+b+c@X.Y>":            "a@x.y",
		"+tag@x.y":               "+tag@x.y", // a local part that is only a tag is not a subaddress
		"":                       "",
		"postmaster":             "postmaster",
	} {
		if got := routing.NormalizeSender(in); got != want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", in, got, want)
		}
	}
}

// An authenticated user's MAIL FROM must be one of the user's addresses.
func TestCheckSender(t *testing.T) {
	e := checksOrg(t, "mixed")
	snap := e.dir.Snapshot()
	for _, c := range []struct {
		user, from string
		ok         bool
	}{
		{"alice", "alice@x.example", true},
		{"alice", "Alice+lists@X.EXAMPLE", true},
		{"alice", "bob@x.example", false},
		{"alice", "alice@elsewhere.example", false},
		{"alice", "", false},
		{"nobody", "alice@x.example", false},
	} {
		chk := routing.CheckSender(snap, c.user, c.from)
		if (chk == nil) != c.ok {
			t.Errorf("CheckSender(%s, %q) = %v, want ok=%v", c.user, c.from, chk, c.ok)
		}
		if chk != nil && (chk.Code != "5.7.1" || !chk.Perm) {
			t.Errorf("CheckSender(%s, %q) code %s perm %v, want permanent 5.7.1", c.user, c.from, chk.Code, chk.Perm)
		}
	}
}

// R17: Anonymous is checked against the Anonymous entry, an authenticated
// user against their own entry, else Default.
func TestR17Permissions(t *testing.T) {
	e := checksOrg(t, "mixed")
	runChecks(t, e, []checkCase{
		{name: "default permissions: Anonymous is Contributor", rcpt: "open@x.example"},
		{name: "Anonymous None is denied", rcpt: "board@x.example", code: "5.7.1"},
		{name: "Default Reviewer cannot create", rcpt: "board@x.example", senderUser: "bob", code: "5.7.1"},
		{name: "own Owner entry", rcpt: "board@x.example", senderUser: "alice"},
		{name: "own entry matches case-insensitively", rcpt: "board@x.example", senderUser: "Alice"},
		{name: "absent Anonymous entry means None", rcpt: "authors@x.example", code: "5.7.1"},
		{name: "authenticated user by Default Author", rcpt: "authors@x.example", senderUser: "bob"},
	})
	d := e.decide("a1", "board@x.example")
	if !strings.Contains(d.Reason, "Anonymous") || !strings.Contains(d.Reason, "R17") {
		t.Fatalf("reason %q", d.Reason)
	}
}

// The explanation names each step and the outcome (what `pfrouter route`
// prints).
func TestWriteTextExplains(t *testing.T) {
	e := build(t, spec{
		Stores: map[string][]string{
			"c1": {unsynced("c1-pub", may)},
			"b1": {pub("b1-pub", feb)},
			"d1": {pub("d1-rep", jan)},
		},
		Folders: folder("/F", "f@x.example", "d1-rep"),
	})
	out := explain(e.decide("a2", "f@x.example"))
	for _, want := range []string{"step 1, attempt 1", "did not know the folder", "step 2: replica", "outcome    deliver to d1-rep on d1", "route      a2 > a1 > b1 > c1"} {
		if !strings.Contains(out, want) {
			t.Errorf("explanation lacks %q:\n%s", want, out)
		}
	}
}

// NormalizeSender never panics, lower-cases, and keeps an address an
// address; a normalised address normalises to itself.
func FuzzNormalizeSender(f *testing.F) {
	for _, s := range []string{"SPAM@CONTOSO.example.", "spam+x@c.example", "<a@b>", "+@", "@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := routing.NormalizeSender(s)
		if strings.Contains(s, "@") != strings.Contains(n, "@") {
			t.Fatalf("%q -> %q: @ appeared or vanished", s, n)
		}
		if n != strings.ToLower(n) {
			t.Fatalf("%q -> %q: not lower case", s, n)
		}
		if strings.Contains(n, "@") && routing.NormalizeSender(n) != n && !strings.ContainsAny(n, "<>. \t") {
			t.Fatalf("%q -> %q -> %q: not stable", s, n, routing.NormalizeSender(n))
		}
	})
}

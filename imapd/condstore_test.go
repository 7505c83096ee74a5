package imapd

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Regression tests of CONDSTORE, QRESYNC (RFC 7162), ESEARCH (RFC 4731)
// and SEARCHRES (RFC 5182) in raw protocol lines: imaptest's groups for
// them (esearch, esearch-condstore) cannot run in CI.

var modSeqRe = regexp.MustCompile(`MODSEQ \(?(\d+)\)?`)

// modSeqIn returns the MODSEQ (or HIGHESTMODSEQ) number in line, 0 if none.
func modSeqIn(line string) uint64 {
	m := modSeqRe.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// grep returns the lines containing every one of parts.
func grep(lines []string, parts ...string) []string {
	var out []string
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func wantOK(t *testing.T, lines []string, tag string) {
	t.Helper()
	if !strings.HasPrefix(tagged(lines), tag+" OK") {
		t.Fatalf("%s: %q", tag, lines)
	}
}

func one(t *testing.T, lines []string, parts ...string) string {
	t.Helper()
	got := grep(lines, parts...)
	if len(got) != 1 {
		t.Fatalf("want one line with %q in %q", parts, lines)
	}
	return got[0]
}

func none(t *testing.T, lines []string, parts ...string) {
	t.Helper()
	if got := grep(lines, parts...); len(got) != 0 {
		t.Fatalf("want no line with %q, got %q", parts, got)
	}
}

// CONDSTORE (RFC 7162 3.1) in a user mailbox: SELECT (CONDSTORE) tells
// HIGHESTMODSEQ; a flag change gets a higher MODSEQ, reported with STORE
// and to other sessions; FETCH (CHANGEDSINCE) returns only what changed;
// STORE (UNCHANGEDSINCE) refuses messages changed since with [MODIFIED],
// by sequence number or UID; SEARCH MODSEQ returns the highest MODSEQ of
// what it found; STATUS HIGHESTMODSEQ agrees.
func TestCondStoreUserMailbox(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.deliver("alice", "m"+strconv.Itoa(i), "body")
	}
	r := e.rawLogin("alice")
	caps := strings.Join(r.cmd("C CAPABILITY"), " ")
	if !strings.Contains(caps, " CONDSTORE") || !strings.Contains(caps, " QRESYNC") {
		t.Fatalf("CAPABILITY lacks CONDSTORE/QRESYNC: %s", caps)
	}
	sel := r.cmd("S SELECT INBOX (CONDSTORE)")
	wantOK(t, sel, "S")
	h0 := modSeqIn(one(t, sel, "* OK [HIGHESTMODSEQ "))
	if h0 == 0 {
		t.Fatalf("HIGHESTMODSEQ 0: %q", sel)
	}
	var top uint64
	for _, l := range grep(r.cmd("F FETCH 1:* (MODSEQ)"), " FETCH (") {
		top = max(top, modSeqIn(l))
	}
	if top != h0 {
		t.Fatalf("highest message MODSEQ %d, HIGHESTMODSEQ %d", top, h0)
	}

	st := r.cmd(`T STORE 2 +FLAGS (\Seen)`)
	wantOK(t, st, "T")
	m2 := modSeqIn(one(t, st, "* 2 FETCH", `\Seen`, "MODSEQ"))
	if m2 <= h0 {
		t.Fatalf("MODSEQ after STORE %d, not above %d", m2, h0)
	}
	// FETCH FLAGS carries MODSEQ once CONDSTORE is enabled.
	one(t, r.cmd("F FETCH 1 (FLAGS)"), "* 1 FETCH", "MODSEQ")

	changed := grep(r.cmd("F FETCH 1:* (FLAGS) (CHANGEDSINCE "+strconv.FormatUint(h0, 10)+")"), " FETCH (")
	if len(changed) != 1 || !strings.HasPrefix(changed[0], "* 2 FETCH") || modSeqIn(changed[0]) != m2 {
		t.Fatalf("CHANGEDSINCE %d: %q", h0, changed)
	}

	// 2 changed after h0: refused; 1 and 3 did not: changed.
	cond := r.cmd(`C1 STORE 1:3 (UNCHANGEDSINCE ` + strconv.FormatUint(h0, 10) + `) +FLAGS (\Flagged)`)
	if !strings.HasPrefix(tagged(cond), "C1 OK [MODIFIED 2]") {
		t.Fatalf("conditional STORE: %q", cond)
	}
	none(t, cond, "* 2 FETCH")
	m1 := modSeqIn(one(t, cond, "* 1 FETCH", `\Flagged`))
	one(t, cond, "* 3 FETCH", `\Flagged`)
	if f := one(t, r.cmd("F FETCH 2 (FLAGS)"), "* 2 FETCH"); strings.Contains(f, `\Flagged`) {
		t.Fatalf("refused message changed: %q", f)
	}
	uids := grep(r.cmd("U FETCH 2 (UID)"), "* 2 FETCH")
	uid2 := regexp.MustCompile(`UID (\d+)`).FindStringSubmatch(uids[0])[1]
	if got := tagged(r.cmd(`C2 UID STORE ` + uid2 + ` (UNCHANGEDSINCE 0) -FLAGS (\Seen)`)); !strings.HasPrefix(got, "C2 OK [MODIFIED "+uid2+"]") {
		t.Fatalf("UID STORE (UNCHANGEDSINCE 0): %q", got)
	}

	// SEARCH MODSEQ: 1 and 3 changed at m1, 2 at m2 < m1.
	s := r.cmd("Q SEARCH MODSEQ " + strconv.FormatUint(m2, 10))
	if got := one(t, s, "* SEARCH"); got != "* SEARCH 1 2 3 (MODSEQ "+strconv.FormatUint(m1, 10)+")" {
		t.Fatalf("SEARCH MODSEQ: %q", got)
	}
	s = r.cmd("Q SEARCH RETURN (MIN) MODSEQ " + strconv.FormatUint(m2, 10) + " 2:3")
	if got := one(t, s, "* ESEARCH"); got != `* ESEARCH (TAG "Q") MIN 2 MODSEQ `+strconv.FormatUint(m2, 10) {
		t.Fatalf("ESEARCH MIN with MODSEQ: %q", got)
	}
	if got := one(t, r.cmd("Q SEARCH MODSEQ "+strconv.FormatUint(m1+1, 10)), "* SEARCH"); got != "* SEARCH" {
		t.Fatalf("SEARCH MODSEQ above every message: %q", got)
	}

	// Another session's change reaches this one with its MODSEQ; STATUS
	// tells the same HIGHESTMODSEQ.
	o := e.rawLogin("alice")
	o.cmd("S SELECT INBOX")
	oc := o.cmd(`T STORE 3 -FLAGS (\Flagged)`)
	wantOK(t, oc, "T")
	m3 := modSeqIn(one(t, o.cmd("F FETCH 3 (MODSEQ)"), "* 3 FETCH"))
	if m3 <= m1 {
		t.Fatalf("other session's MODSEQ %d, not above %d", m3, m1)
	}
	if got := one(t, r.cmd("N NOOP"), "* 3 FETCH"); modSeqIn(got) != m3 || strings.Contains(got, `\Flagged`) {
		t.Fatalf("unsolicited FETCH: %q, want MODSEQ %d", got, m3)
	}
	if got := one(t, o.cmd("X STATUS INBOX (HIGHESTMODSEQ MESSAGES)"), "* STATUS"); !strings.Contains(got, "HIGHESTMODSEQ "+strconv.FormatUint(m3, 10)) {
		t.Fatalf("STATUS: %q, want HIGHESTMODSEQ %d", got, m3)
	}
}

// A CONDSTORE-enabling command in the selected state (FETCH MODSEQ)
// first tells HIGHESTMODSEQ, once (RFC 7162 3.1; imaptest
// esearch-condstore); ENABLE CONDSTORE enables it too.
func TestCondStoreEnablingCommand(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "one", "body")
	r := e.rawLogin("alice")
	sel := r.cmd("S SELECT INBOX")
	none(t, sel, "HIGHESTMODSEQ")
	f := r.cmd("F FETCH 1 (MODSEQ)")
	h := one(t, f, "* OK [HIGHESTMODSEQ ")
	if modSeqIn(h) != modSeqIn(one(t, f, "* 1 FETCH (MODSEQ (")) {
		t.Fatalf("enabling FETCH: %q", f)
	}
	none(t, r.cmd("F FETCH 1 (MODSEQ)"), "HIGHESTMODSEQ")

	r2 := e.rawLogin("alice")
	if got := r2.cmd("E ENABLE CONDSTORE"); one(t, got, "* ENABLED") != "* ENABLED CONDSTORE" {
		t.Fatalf("ENABLE: %q", got)
	}
	one(t, r2.cmd("S SELECT INBOX"), "* OK [HIGHESTMODSEQ ")
}

// QRESYNC (RFC 7162 3.2): after ENABLE QRESYNC, SELECT (QRESYNC (uv
// modseq [known-uids])) reports the expunges since as VANISHED (EARLIER)
// and the flag changes of known messages as FETCH; expunges in the
// session are VANISHED, never EXPUNGE; FETCH responses carry UID; UID
// FETCH (CHANGEDSINCE n VANISHED) reports expunges too. Without ENABLE
// QRESYNC the parameter is a client error.
func TestQResync(t *testing.T) {
	e := newEnv(t)
	for i := range 4 {
		e.deliver("alice", "m"+strconv.Itoa(i), "body") // UIDs 1..4
	}
	r := e.rawLogin("alice")
	if got := tagged(r.cmd("B SELECT INBOX (QRESYNC (1 1))")); !strings.HasPrefix(got, "B BAD") {
		t.Fatalf("QRESYNC without ENABLE: %q", got)
	}
	if got := one(t, r.cmd("E ENABLE QRESYNC"), "* ENABLED"); got != "* ENABLED QRESYNC" {
		t.Fatalf("ENABLE QRESYNC: %q", got)
	}
	sel := r.cmd("S SELECT INBOX")
	h := strconv.FormatUint(modSeqIn(one(t, sel, "* OK [HIGHESTMODSEQ ")), 10)
	uv := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(one(t, sel, "UIDVALIDITY"))[1]
	r.cmd("U UNSELECT")

	// Meanwhile another session expunges UID 2, flags UID 3, and a new
	// message (UID 5) arrives.
	o := e.rawLogin("alice")
	o.cmd("S SELECT INBOX")
	wantOK(t, o.cmd(`T STORE 2 +FLAGS (\Deleted)`), "T")
	wantOK(t, o.cmd("X EXPUNGE"), "X")
	wantOK(t, o.cmd(`T STORE 2 +FLAGS (\Answered)`), "T") // UID 3, now number 2
	e.deliver("alice", "m5", "body")

	res := r.cmd("S SELECT INBOX (QRESYNC (" + uv + " " + h + "))")
	wantOK(t, res, "S")
	if got := one(t, res, "VANISHED"); got != "* VANISHED (EARLIER) 2" {
		t.Fatalf("VANISHED: %q", got)
	}
	fetches := grep(res, " FETCH (")
	if len(fetches) != 1 || !strings.HasPrefix(fetches[0], "* 2 FETCH (UID 3 FLAGS (\\Answered) MODSEQ (") {
		t.Fatalf("resync FETCH: %q", fetches)
	}
	one(t, res, "* 4 EXISTS")
	// The known-UID list bounds VANISHED; another UIDVALIDITY resyncs nothing.
	none(t, r.cmd("S SELECT INBOX (QRESYNC ("+uv+" "+h+" 3:5))"), "VANISHED")
	stale := r.cmd("S SELECT INBOX (QRESYNC (" + uv + "1 " + h + "))")
	none(t, stale, "VANISHED")
	none(t, stale, " FETCH (")

	r.cmd("S SELECT INBOX")
	// FETCH without UID still reports it; expunges are VANISHED.
	one(t, r.cmd("F FETCH 1 (FLAGS)"), "* 1 FETCH (UID 1 ")
	wantOK(t, r.cmd(`T STORE 1 +FLAGS.SILENT (\Deleted)`), "T")
	x := r.cmd("X EXPUNGE")
	wantOK(t, x, "X")
	if got := one(t, x, "*"); got != "* VANISHED 1" {
		t.Fatalf("EXPUNGE with QRESYNC: %q", x)
	}
	v := r.cmd("V UID FETCH 1:* (FLAGS) (CHANGEDSINCE " + h + " VANISHED)")
	wantOK(t, v, "V")
	if got := one(t, v, "VANISHED"); got != "* VANISHED (EARLIER) 1:2" {
		t.Fatalf("UID FETCH VANISHED: %q", v)
	}
	if got := tagged(r.cmd("V FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")); !strings.HasPrefix(got, "V BAD") {
		t.Fatalf("VANISHED without UID FETCH: %q", got)
	}
	// Another session's expunge reaches this one as VANISHED.
	o.cmd("S SELECT INBOX")
	wantOK(t, o.cmd(`T UID STORE 4 +FLAGS (\Deleted)`), "T")
	wantOK(t, o.cmd("X UID EXPUNGE 4"), "X")
	if got := one(t, r.cmd("N NOOP"), "VANISHED"); got != "* VANISHED 4" {
		t.Fatalf("unsolicited VANISHED: %q", got)
	}
}

// On a public folder flags are per user (SPEC A7), and so are modseqs of
// flag changes: bob's \Seen is not a change alice's session hears of or
// her HIGHESTMODSEQ counts.
func TestCondStorePublicFolderPerUserA7(t *testing.T) {
	e := newEnv(t)
	e.post("/Open", "post one")
	a := e.rawLogin("alice")
	ha := modSeqIn(one(t, a.cmd(`S SELECT "Public Folders/Open" (CONDSTORE)`), "HIGHESTMODSEQ"))
	b := e.rawLogin("bob")
	hb := modSeqIn(one(t, b.cmd(`S SELECT "Public Folders/Open" (CONDSTORE)`), "HIGHESTMODSEQ"))
	if ha != hb {
		t.Fatalf("HIGHESTMODSEQ before any flag: alice %d, bob %d", ha, hb)
	}
	mb := modSeqIn(one(t, b.cmd(`T STORE 1 +FLAGS (\Seen)`), "* 1 FETCH", `\Seen`))
	if mb <= hb {
		t.Fatalf("bob's MODSEQ %d, not above %d", mb, hb)
	}
	none(t, a.cmd("N NOOP"), " FETCH (")
	if got := one(t, a.cmd("F FETCH 1 (FLAGS)"), "* 1 FETCH"); modSeqIn(got) != ha || strings.Contains(got, `\Seen`) {
		t.Fatalf("alice sees %q, want MODSEQ %d and no \\Seen", got, ha)
	}
	if got := modSeqIn(one(t, a.cmd(`X STATUS "Public Folders/Open" (HIGHESTMODSEQ)`), "* STATUS")); got != ha {
		t.Fatalf("alice's HIGHESTMODSEQ %d after bob's change, want %d", got, ha)
	}
	// A new post is everyone's change.
	e.post("/Open", "post two")
	if got := modSeqIn(one(t, a.cmd(`X STATUS "Public Folders/Open" (HIGHESTMODSEQ)`), "* STATUS")); got <= mb {
		t.Fatalf("alice's HIGHESTMODSEQ %d after a post, want above %d", got, mb)
	}
}

// ESEARCH (RFC 4731) return options for SEARCH and UID SEARCH, empty
// results, and SEARCHRES (RFC 5182): RETURN (SAVE) alone answers no
// ESEARCH, SAVE with MIN saves just the minimum, "$" reuses it.
func TestESearchReturnOptions(t *testing.T) {
	e := newEnv(t)
	for i := range 6 {
		e.deliver("alice", "m"+strconv.Itoa(i), "body") // UIDs 1..6
	}
	r := e.rawLogin("alice")
	r.cmd("S SELECT INBOX")
	wantOK(t, r.cmd(`T STORE 4 +FLAGS.SILENT (\Deleted)`), "T")
	wantOK(t, r.cmd("X EXPUNGE"), "X") // UIDs 1,2,3,5,6 at 1..5
	wantOK(t, r.cmd(`T STORE 2,4 +FLAGS.SILENT (\Seen)`), "T")
	for _, c := range []struct{ cmd, want string }{
		{"SEARCH RETURN () ALL", `* ESEARCH (TAG "A") ALL 1:5`},
		{"SEARCH RETURN (MIN MAX COUNT) ALL", `* ESEARCH (TAG "A") MIN 1 MAX 5 COUNT 5`},
		{"UID SEARCH RETURN (ALL) ALL", `* ESEARCH (TAG "A") UID ALL 1:3,5:6`},
		{"UID SEARCH RETURN (MIN MAX) SEEN", `* ESEARCH (TAG "A") UID MIN 2 MAX 5`},
		{"UID SEARCH RETURN (COUNT) SEEN", `* ESEARCH (TAG "A") UID COUNT 2`},
		{"SEARCH RETURN (MIN) 1000", `* ESEARCH (TAG "A")`},
		{"SEARCH RETURN (COUNT) 1000", `* ESEARCH (TAG "A") COUNT 0`},
		{"UID SEARCH RETURN () 1000", `* ESEARCH (TAG "A") UID`},
	} {
		lines := r.cmd("A " + c.cmd)
		wantOK(t, lines, "A")
		if got := one(t, lines, "* ESEARCH"); got != c.want {
			t.Errorf("%s: %q, want %q", c.cmd, got, c.want)
		}
	}
	save := r.cmd("A SEARCH RETURN (SAVE) SEEN")
	wantOK(t, save, "A")
	if len(save) != 1 {
		t.Fatalf("RETURN (SAVE) alone answered %q", save)
	}
	if got := grep(r.cmd("F FETCH $ (UID)"), "FETCH (UID"); len(got) != 2 {
		t.Fatalf("FETCH $ after SAVE: %q", got)
	}
	wantOK(t, r.cmd("A SEARCH RETURN (SAVE MIN) SEEN"), "A")
	if got := grep(r.cmd("F FETCH $ (UID)"), "FETCH (UID"); len(got) != 1 || got[0] != "* 2 FETCH (UID 2)" {
		t.Fatalf("FETCH $ after SAVE MIN: %q", got)
	}
}

// A referred public folder (issue 13) has no mod-sequences here: SELECT
// (CONDSTORE) answers NOMODSEQ, the commands that need modseqs are
// refused, and a QRESYNC session cannot open it (its expunges are only
// known by sequence number).
func TestCondStoreReferredFolderNoModSeq(t *testing.T) {
	e, _, st2 := newReferralEnv(t)
	postTo(t, st2, "s2-pub", "/Remote", "remote post")
	r := e.rawLogin("alice")
	sel := r.cmd(`S SELECT "Public Folders/Remote" (CONDSTORE)`)
	wantOK(t, sel, "S")
	one(t, sel, "* OK [NOMODSEQ]")
	if got := tagged(r.cmd("F FETCH 1 (MODSEQ)")); !strings.HasPrefix(got, "F NO") {
		t.Fatalf("FETCH MODSEQ on a referred folder: %q", got)
	}
	if got := tagged(r.cmd(`T STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\Seen)`)); !strings.HasPrefix(got, "T NO") {
		t.Fatalf("conditional STORE on a referred folder: %q", got)
	}
	one(t, r.cmd("F FETCH 1 (FLAGS)"), "* 1 FETCH")
	if got := one(t, r.cmd(`X STATUS "Public Folders/Remote" (HIGHESTMODSEQ)`), "* STATUS"); !strings.Contains(got, "HIGHESTMODSEQ 0") {
		t.Fatalf("STATUS of a referred folder: %q", got)
	}
	q := e.rawLogin("alice")
	q.cmd("E ENABLE QRESYNC")
	if got := tagged(q.cmd(`S SELECT "Public Folders/Remote"`)); !strings.HasPrefix(got, "S NO") {
		t.Fatalf("QRESYNC session selecting a referred folder: %q", got)
	}
}

// CONTEXT=SEARCH (RFC 5267): SEARCH RETURN (UPDATE) stays live — flag
// changes by this or another session, a new message and an expunge send
// ESEARCH ADDTO / REMOVEFROM (REMOVEFROM before the EXPUNGE, ADDTO after
// the EXISTS) — until CANCELUPDATE; PARTIAL returns a window of the
// result, by position (imaptest search-context-update*, search-partial).
func TestContextSearchUpdateAndPartial(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.deliver("alice", "s"+strconv.Itoa(i), "body")
	}
	r := e.rawLogin("alice")
	if caps := strings.Join(r.cmd("C CAPABILITY"), " "); !strings.Contains(caps, " CONTEXT=SEARCH") {
		t.Fatalf("CAPABILITY lacks CONTEXT=SEARCH: %s", caps)
	}
	r.cmd("S SELECT INBOX")
	wantOK(t, r.cmd(`T STORE 1,2 +FLAGS.SILENT (\Seen)`), "T")
	if got := one(t, r.cmd("W SEARCH RETURN (UPDATE ALL) SEEN"), "* ESEARCH"); got != `* ESEARCH (TAG "W") ALL 1:2` {
		t.Fatalf("initial result: %q", got)
	}
	if got := one(t, r.cmd(`T STORE 3:5 +FLAGS.SILENT (\Seen)`), "ADDTO"); got != `* ESEARCH (TAG "W") ADDTO (0 3:5)` {
		t.Fatalf("ADDTO: %q", got)
	}
	if got := one(t, r.cmd(`T STORE 1,3 -FLAGS.SILENT (\Seen)`), "REMOVEFROM"); got != `* ESEARCH (TAG "W") REMOVEFROM (0 1,3)` {
		t.Fatalf("REMOVEFROM: %q", got)
	}
	// UID SEARCH updates speak UIDs; both searches hear another session.
	if got := one(t, r.cmd("U UID SEARCH RETURN (UPDATE) UNSEEN"), "* ESEARCH"); got != `* ESEARCH (TAG "U") UID ALL 1,3` {
		t.Fatalf("UID initial result: %q", got)
	}
	o := e.rawLogin("alice")
	o.cmd("S SELECT INBOX")
	wantOK(t, o.cmd(`T STORE 1 +FLAGS.SILENT (\Seen)`), "T")
	n := r.cmd("N NOOP")
	one(t, n, `* ESEARCH (TAG "W") ADDTO (0 1)`)
	one(t, n, `* ESEARCH (TAG "U") UID REMOVEFROM (0 1)`)

	// Expunge of a message in the result: REMOVEFROM by its number, then EXPUNGE.
	wantOK(t, r.cmd(`T STORE 4 +FLAGS.SILENT (\Deleted)`), "T")
	x := r.cmd("X EXPUNGE")
	if len(x) != 3 || x[0] != `* ESEARCH (TAG "W") REMOVEFROM (0 4)` || x[1] != "* 4 EXPUNGE" {
		t.Fatalf("EXPUNGE: %q", x)
	}
	// A new seen message: EXISTS, then ADDTO.
	a := r.cmd("A APPEND INBOX (\\Seen) {" + strconv.Itoa(len(message("new", "b"))) + "+}\r\n" + string(message("new", "b")))
	wantOK(t, a, "A")
	if i, j := slices.Index(a, "* 5 EXISTS"), slices.Index(a, `* ESEARCH (TAG "W") ADDTO (0 5)`); i < 0 || j < i {
		t.Fatalf("APPEND: %q", a)
	}
	wantOK(t, r.cmd(`K CANCELUPDATE "W" "U"`), "K")
	none(t, r.cmd(`T STORE 1:* -FLAGS (\Seen)`), "ESEARCH")

	for _, c := range []struct{ cmd, want string }{
		{"SEARCH RETURN (PARTIAL 2:3) ALL", `* ESEARCH (TAG "P") PARTIAL (2:3 2:3)`},
		{"SEARCH RETURN (PARTIAL 3:2) ALL", `* ESEARCH (TAG "P") PARTIAL (2:3 2:3)`},
		{"SEARCH RETURN (PARTIAL 4:9) ALL", `* ESEARCH (TAG "P") PARTIAL (4:9 4:5)`},
		{"SEARCH RETURN (PARTIAL 9:9) ALL", `* ESEARCH (TAG "P") PARTIAL (9:9 NIL)`},
		{"UID SEARCH RETURN (PARTIAL 4:4) ALL", `* ESEARCH (TAG "P") UID PARTIAL (4:4 5)`},
	} {
		if got := one(t, r.cmd("P "+c.cmd), "* ESEARCH"); got != c.want {
			t.Errorf("%s: %q, want %q", c.cmd, got, c.want)
		}
	}
	for _, bad := range []string{"SEARCH RETURN (PARTIAL 1) ALL", "SEARCH RETURN (PARTIAL 1:*) ALL", "SEARCH RETURN (PARTIAL 0:2) ALL"} {
		if got := tagged(r.cmd("B " + bad)); !strings.HasPrefix(got, "B BAD") {
			t.Errorf("%s: %q, want BAD", bad, got)
		}
	}
}

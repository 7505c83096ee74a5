package pop3d

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const msg1 = "From: a@example.com\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"

// Bare LF line ends and dot lines, to exercise normalisation and stuffing.
const msg2 = "From: b@example.com\nSubject: two\n\n.hidden\n..two dots\n.\nend"

func TestFullSession_A6(t *testing.T) {
	md := newMaildrop(msg1, msg2)
	auth := &fakeAuth{md: md}
	_, addr := startServer(t, Options{Auth: auth})
	cl := dial(t, addr)

	cl.expect("CAPA", "+OK")
	caps := cl.dotBody()
	for _, want := range []string{"USER", "SASL PLAIN", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "IMPLEMENTATION pfrouter"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CAPA %q lacks %q", caps, want)
		}
	}
	if slices.Contains(caps, "STLS") {
		t.Errorf("CAPA advertises STLS without a TLS config: %q", caps)
	}

	cl.login()
	size1, _ := TransmittedSize(strings.NewReader(msg1))
	size2, _ := TransmittedSize(strings.NewReader(msg2))
	if got, want := cl.cmd("STAT"), fmt.Sprintf("+OK 2 %d", size1+size2); got != want {
		t.Errorf("STAT = %q, want %q", got, want)
	}
	if got, want := cl.multi("LIST"), []string{fmt.Sprintf("1 %d", size1), fmt.Sprintf("2 %d", size2)}; !slices.Equal(got, want) {
		t.Errorf("LIST = %q, want %q", got, want)
	}
	if got, want := cl.cmd("LIST 2"), fmt.Sprintf("+OK 2 %d", size2); got != want {
		t.Errorf("LIST 2 = %q, want %q", got, want)
	}
	if got, want := cl.multi("UIDL"), []string{"1 uid-1", "2 uid-2"}; !slices.Equal(got, want) {
		t.Errorf("UIDL = %q, want %q", got, want)
	}
	cl.expect("UIDL 1", "+OK 1 uid-1")
	cl.expect("LIST 3", "-ERR")
	cl.expect("LIST 0", "-ERR")
	cl.expect("NOOP", "+OK")
	body := cl.multi("RETR 1")
	if got := strings.Join(body, "\r\n") + "\r\n"; got != msg1 {
		t.Errorf("RETR 1 = %q, want %q", got, msg1)
	}
	cl.expect("QUIT", "+OK")
	cl.expectClosed()
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 0 {
		t.Errorf("Delete called %v without DELE", d)
	}
	reqs := auth.requests()
	if len(reqs) != 1 || reqs[0].Mechanism != "USER" || reqs[0].TLS || reqs[0].Remote == nil {
		t.Errorf("auth requests = %+v", reqs)
	}
}

func TestDeleQuitRemoves_A6(t *testing.T) {
	md := newMaildrop(msg1, msg2, msg1)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 2", "+OK")
	cl.expect("DELE 2", "-ERR") // already deleted
	cl.expect("RETR 2", "-ERR")
	cl.expect("LIST 2", "-ERR")
	if got := cl.multi("UIDL"); !slices.Equal(got, []string{"1 uid-1", "3 uid-3"}) {
		t.Errorf("UIDL after DELE = %q", got)
	}
	if d := md.deleteCalls(); len(d) != 0 {
		t.Fatalf("Delete called before QUIT: %v", d)
	}
	cl.expect("QUIT", "+OK")
	cl.expectClosed()
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 1 || !slices.Equal(d[0], []string{"uid-2"}) {
		t.Errorf("Delete calls = %v, want [[uid-2]]", d)
	}
}

func TestDeleThenDropDeletesNothing_A6(t *testing.T) {
	md := newMaildrop(msg1, msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 1", "+OK")
	cl.c.Close() // dropped, no QUIT
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 0 {
		t.Errorf("Delete called %v after a dropped connection", d)
	}
	if n := md.closeCount(); n != 1 {
		t.Errorf("Close called %d times, want 1", n)
	}
}

func TestServerCloseDeletesNothing_A6(t *testing.T) {
	md := newMaildrop(msg1)
	srv, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 1", "+OK")
	srv.Close()
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 0 {
		t.Errorf("Delete called %v on server shutdown", d)
	}
}

func TestRsetUndeletes_A6(t *testing.T) {
	md := newMaildrop(msg1, msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 1", "+OK")
	cl.expect("DELE 2", "+OK")
	cl.expect("STAT", "+OK 0 0")
	cl.expect("RSET", "+OK maildrop has 2 messages")
	if !strings.HasPrefix(cl.cmd("STAT"), "+OK 2 ") {
		t.Error("STAT after RSET does not show 2 messages")
	}
	cl.expect("RETR 1", "+OK")
	cl.dotBody()
	cl.expect("QUIT", "+OK")
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 0 {
		t.Errorf("Delete called %v after RSET", d)
	}
}

func TestDeleteFailureReported_A6(t *testing.T) {
	md := newMaildrop(msg1)
	md.deleteEr = errors.New("disk on fire")
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 1", "+OK")
	cl.expect("QUIT", "-ERR [SYS/TEMP]")
	md.waitClosed(t)
}

func TestTop_A6(t *testing.T) {
	md := newMaildrop(msg1, msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	want0 := []string{"From: a@example.com", "Subject: one", ""}
	if got := cl.multi("TOP 1 0"); !slices.Equal(got, want0) {
		t.Errorf("TOP 1 0 = %q, want %q", got, want0)
	}
	if got, want := cl.multi("TOP 1 2"), append(want0, "line 1", "line 2"); !slices.Equal(got, want) {
		t.Errorf("TOP 1 2 = %q, want %q", got, want)
	}
	if got, want := cl.multi("TOP 1 99"), append(want0, "line 1", "line 2", "line 3"); !slices.Equal(got, want) {
		t.Errorf("TOP 1 99 = %q, want %q", got, want)
	}
	// Stuffing applies to TOP too.
	if got, want := cl.multi("TOP 2 1"), []string{"From: b@example.com", "Subject: two", "", "..hidden"}; !slices.Equal(got, want) {
		t.Errorf("TOP 2 1 = %q, want %q", got, want)
	}
	cl.expect("TOP 1", "-ERR")
	cl.expect("TOP 1 x", "-ERR")
	cl.expect("TOP 9 1", "-ERR")
}

func TestByteStuffingRoundTrip(t *testing.T) {
	md := newMaildrop(msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.send("RETR 1")
	status := cl.line()
	raw := cl.dotBody()
	wantWire := []string{"From: b@example.com", "Subject: two", "", "..hidden", "...two dots", "..", "end"}
	if !slices.Equal(raw, wantWire) {
		t.Fatalf("wire lines = %q, want %q", raw, wantWire)
	}
	var unstuffed []string
	for _, l := range raw {
		unstuffed = append(unstuffed, strings.TrimPrefix(l, "."))
	}
	got := strings.Join(unstuffed, "\r\n") + "\r\n"
	want := strings.ReplaceAll(msg2, "\n", "\r\n") + "\r\n"
	if got != want {
		t.Errorf("un-stuffed = %q, want %q", got, want)
	}
	if st := fmt.Sprintf("+OK %d octets", len(want)); status != st {
		t.Errorf("status %q, want %q (size is after CRLF normalisation, before stuffing)", status, st)
	}
}

func TestWrongStateCommands(t *testing.T) {
	md := newMaildrop(msg1)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}, MaxBadCommands: 100})
	cl := dial(t, addr)
	for _, c := range []string{"STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "UIDL", "TOP 1 1"} {
		cl.expect(c, "-ERR")
	}
	cl.expect("PASS secret pw", "-ERR") // PASS without USER
	cl.login()
	for _, c := range []string{"USER alice", "PASS x", "AUTH PLAIN", "STLS"} {
		cl.expect(c, "-ERR")
	}
	cl.expect("XYZZY", "-ERR unknown command")
	cl.expect("STAT", "+OK")
}

func TestOverlongLine(t *testing.T) {
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop(msg1)}})
	cl := dial(t, addr)
	cl.expect("USER "+strings.Repeat("a", 600), "-ERR line too long")
	cl.expect("CAPA", "+OK") // the session recovers
	cl.dotBody()
	cl.login()
}

func TestMaxBadCommandsDisconnects(t *testing.T) {
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop()}, MaxBadCommands: 3})
	cl := dial(t, addr)
	cl.expect("BOGUS", "-ERR")
	cl.expect("BOGUS", "-ERR")
	cl.expect("BOGUS", "-ERR")
	cl.expectClosed()
}

func TestAuthFailure(t *testing.T) {
	md := newMaildrop(msg1)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.expect("USER alice", "+OK")
	cl.expect("PASS wrong", "-ERR [AUTH] invalid credentials")
	cl.expect("USER mallory", "+OK") // no user enumeration
	cl.expect("PASS secret pw", "-ERR [AUTH]")
	cl.expect("AUTH PLAIN "+plainIR("", "alice", "nope"), "-ERR [AUTH]")
	cl.login() // still possible afterwards
}

func TestAuthInUseAndBackendErrors(t *testing.T) {
	md := newMaildrop(msg1)
	auth := &fakeAuth{md: md, err: &AuthError{Code: "IN-USE", Msg: "maildrop locked by another session"}}
	_, addr := startServer(t, Options{Auth: auth})
	cl := dial(t, addr)
	cl.expect("USER alice", "+OK")
	cl.expect("PASS secret pw", "-ERR [IN-USE] maildrop locked")

	auth.err = errors.New("badger: closed")
	cl.expect("USER alice", "+OK")
	cl.expect("PASS secret pw", "-ERR [SYS/TEMP]")

	auth.err = nil
	md.listErr = errors.New("store down")
	cl.expect("USER alice", "+OK")
	cl.expect("PASS secret pw", "-ERR [SYS/TEMP]")
	md.waitClosed(t) // the lock is released when listing fails
	cl.expect("STAT", "-ERR")
}

func TestRetrOpenErrorIsSysTemp(t *testing.T) {
	md := newMaildrop(msg1)
	md.openErr = errors.New("value log missing")
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.login()
	cl.expect("RETR 1", "-ERR [SYS/TEMP]")
	cl.expect("NOOP", "+OK")
}

func plainIR(authz, user, pass string) string {
	return b64(authz + "\x00" + user + "\x00" + pass)
}

func TestAuthPlain(t *testing.T) {
	t.Run("initial response", func(t *testing.T) {
		auth := &fakeAuth{md: newMaildrop(msg1), authzOK: "alice"}
		_, addr := startServer(t, Options{Auth: auth})
		cl := dial(t, addr)
		cl.expect("AUTH PLAIN "+plainIR("alice", "alice", "secret pw"), "+OK")
		cl.expect("STAT", "+OK 1 ")
		if r := auth.requests(); len(r) != 1 || r[0].Mechanism != "PLAIN" || r[0].AuthzID != "alice" {
			t.Errorf("requests %+v", r)
		}
	})
	t.Run("continuation", func(t *testing.T) {
		_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop(msg1)}})
		cl := dial(t, addr)
		if got := cl.cmd("auth plain"); got != "+ " {
			t.Fatalf("AUTH PLAIN challenge = %q, want %q", got, "+ ")
		}
		cl.expect(plainIR("", "alice", "secret pw"), "+OK")
		cl.expect("STAT", "+OK 1 ")
	})
	t.Run("cancel and errors", func(t *testing.T) {
		_, addr := startServer(t, Options{Auth: &fakeAuth{md: newMaildrop(msg1)}})
		cl := dial(t, addr)
		cl.expect("AUTH PLAIN", "+ ")
		cl.expect("*", "-ERR")
		cl.expect("AUTH PLAIN", "+ ")
		cl.expect("!!!notbase64", "-ERR")
		cl.expect("AUTH PLAIN "+b64("no-nuls"), "-ERR [AUTH]")
		cl.expect("AUTH PLAIN =", "-ERR [AUTH]")
		cl.expect("AUTH CRAM-MD5", "-ERR")
		if got := cl.multi("AUTH"); !slices.Equal(got, []string{"PLAIN"}) {
			t.Errorf("AUTH list = %q", got)
		}
		cl.expect("STAT", "-ERR") // still not logged in
	})
}

// SPEC A2: with plaintext refused on a clear connection, USER and SASL
// PLAIN are neither advertised nor accepted.
func TestPlaintextRefusedWithoutTLS_A2(t *testing.T) {
	auth := &fakeAuth{md: newMaildrop(msg1)}
	_, addr := startServer(t, Options{Auth: auth, PlaintextAllowed: func(tls bool) bool { return tls }})
	cl := dial(t, addr)
	caps := cl.multi("CAPA")
	if slices.Contains(caps, "USER") || slices.Contains(caps, "SASL PLAIN") {
		t.Errorf("CAPA %q advertises plaintext login on a clear connection", caps)
	}
	cl.expect("USER alice", "-ERR [AUTH]")
	cl.expect("AUTH PLAIN "+plainIR("", "alice", "secret pw"), "-ERR [AUTH]")
	if r := auth.requests(); len(r) != 0 {
		t.Errorf("Authenticator saw %d requests; credentials must not reach it", len(r))
	}
}

func TestPipelining(t *testing.T) {
	md := newMaildrop(msg1, msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}})
	cl := dial(t, addr)
	cl.send("USER alice\r\nPASS secret pw\r\nSTAT\r\nDELE 1\r\nNOOP\r\nQUIT")
	wants := []string{"+OK", "+OK logged in", "+OK 2 ", "+OK message 1", "+OK", "+OK"}
	for _, w := range wants {
		if got := cl.line(); !strings.HasPrefix(got, w) {
			t.Fatalf("pipelined answer %q, want prefix %q", got, w)
		}
	}
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 1 || !slices.Equal(d[0], []string{"uid-1"}) {
		t.Errorf("Delete calls %v", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	md := newMaildrop(msg1)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}, IdleTimeout: 200 * time.Millisecond})
	cl := dial(t, addr)
	cl.login()
	cl.expect("DELE 1", "+OK")
	// Send nothing: the server must log us out without UPDATE.
	_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got := cl.line(); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("idle answer %q", got)
	}
	cl.expectClosed()
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 0 {
		t.Errorf("Delete called %v on autologout", d)
	}
}

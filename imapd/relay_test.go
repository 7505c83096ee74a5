package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/store"
)

// Issue 13 item 4: a referred FETCH reaches the client byte for byte as
// the replica server answers its own session, for every kind of data item
// (obsolete RFC822 forms, BODY next to BODYSTRUCTURE, header field lists,
// partials, BINARY) and for the replica server's errors.
func TestReferredFetchIsVerbatim(t *testing.T) {
	e, _, st2 := newReferralEnv(t)
	postTo(t, st2, "s2-pub", "/Remote", "first remote")
	multipart := "From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n"
	if _, _, err := st2.Deliver(t.Context(), store.Delivery{Store: "s2-pub", Folder: "/Remote", Class: "IPM.Post", Body: []byte(multipart)}); err != nil {
		t.Fatal(err)
	}

	referred := e.rawLogin("alice")
	a, b := net.Pipe()
	go e.srv.referrals.(*pipeReferrer).peer.ServeReferral(b, "alice")
	t.Cleanup(func() { a.Close() })
	direct := &rawConn{t: t, c: a, br: bufio.NewReader(a)}
	for _, r := range []*rawConn{referred, direct} {
		if got := tagged(r.cmd(`S SELECT "Public Folders/Remote"`)); !strings.HasPrefix(got, "S OK") {
			t.Fatalf("SELECT: %s", got)
		}
	}
	for _, req := range []string{
		"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)",
		"FETCH 2 (BODY BODYSTRUCTURE)",
		"FETCH 2 BODY",
		"FETCH 1:2 FULL",
		"FETCH 1 RFC822.HEADER",
		"FETCH 1 (RFC822.SIZE RFC822.PEEK)",
		`FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (Subject "X-Odd Name")]<0.20> BODY.PEEK[TEXT]<3.5>)`,
		"FETCH 2 (BODY.PEEK[1.MIME] BODY.PEEK[2] BINARY.PEEK[1] BINARY.SIZE[1])",
		"UID FETCH 1:* (FLAGS)",
		"FETCH 7 (FLAGS)",
		"FETCH 1 (BINARY.PEEK[9])",
	} {
		want := direct.reply("F " + req)
		got := referred.reply("F " + req)
		// \Recent goes to the first session that saw a message.
		norm := func(lines []string) string {
			return strings.ReplaceAll(strings.Join(lines, "\n"), `FLAGS (\Recent)`, "FLAGS ()")
		}
		if norm(got) != norm(want) || !strings.HasPrefix(tagged(want), "F ") {
			t.Errorf("%s\nreferred: %q\n  direct: %q", req, got, want)
		}
	}
}

// reply sends "tag ..." and returns the lines up to the tagged reply;
// unlike cmd it reads empty lines (inside literals) as lines.
func (r *rawConn) reply(s string) []string {
	r.t.Helper()
	r.send(s + "\r\n")
	tag := strings.Fields(s)[0]
	var out []string
	for {
		r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reply to %s: %v after %q", tag, err, out)
		}
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// The relay's reader on what a replica server might send: whatever it
// passes on is exactly what it read, it never panics, and it stops at
// anything it cannot follow.
func FuzzRelayResponses(f *testing.F) {
	f.Add([]byte("* 1 FETCH (UID 4 BODY[] {5}\r\nhello FLAGS (\\Seen))\r\n* 2 EXISTS\r\nR1 OK done\r\n"))
	f.Add([]byte("* 1 FETCH (BODY[] {999999}\r\nshort"))
	f.Add([]byte("* FLAGS (\\Seen $x)\r\n* OK [PERMANENTFLAGS (\\*)] x\r\nR1 NO [CANNOT] no\r\n"))
	f.Add([]byte("* 1 FETCH (BODY[] {-1}\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		var out bytes.Buffer
		tail := make([]byte, 0, 32)
		for range 100 {
			line, full, err := nextPiece(br)
			if err != nil {
				break
			}
			if bytes.HasPrefix(line, []byte("R1 ")) {
				taggedError(line[3:])
				break
			}
			if _, _, ok := untagged(line); !ok {
				break
			}
			if err := relayResponse(br, line, full, &out, &tail); err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("relayed %q, not a prefix of %q", out.Bytes(), data)
		}
	})
}

func TestRelayParsers(t *testing.T) {
	for _, c := range []struct {
		line string
		num  uint32
		kind string
		ok   bool
	}{
		{"* 12 FETCH (UID 1)\r\n", 12, "FETCH", true},
		{"* 3 EXPUNGE\r\n", 3, "EXPUNGE", true},
		{"* FLAGS (\\Seen)\r\n", 0, "FLAGS", true},
		{"* OK [PERMANENTFLAGS ()] x\r\n", 0, "OK", true},
		{"* 99999999999 EXISTS\r\n", 0, "", false},
		{"+ go ahead\r\n", 0, "", false},
	} {
		num, kind, ok := untagged([]byte(c.line))
		if num != c.num || kind != c.kind || ok != c.ok {
			t.Errorf("untagged(%q) = %d %q %v, want %d %q %v", c.line, num, kind, ok, c.num, c.kind, c.ok)
		}
	}
	for _, c := range []struct {
		status string
		want   string
	}{
		{"OK FETCH completed\r\n", "<nil>"},
		{"NO [NOPERM] No permission\r\n", "NO NOPERM No permission"},
		{"BAD [CLIENTBUG] Syntax error: x\r\n", "BAD CLIENTBUG Syntax error: x"},
		{"NO plain\r\n", "NO  plain"},
	} {
		got := fmt.Sprint(taggedError([]byte(c.status)))
		var ie *imap.Error
		if errors.As(taggedError([]byte(c.status)), &ie) {
			got = string(ie.Type) + " " + string(ie.Code) + " " + ie.Text
		}
		if got != c.want {
			t.Errorf("taggedError(%q) = %q, want %q", c.status, got, c.want)
		}
	}
	if err := taggedError([]byte("PREAUTH x\r\n")); !errors.Is(err, errRelayProtocol) {
		t.Errorf("tagged PREAUTH: %v", err)
	}
	for line, want := range map[string]int64{"* 1 FETCH (BODY[] {12}\r\n": 12, "(x)\r\n": -1, "{0}\r\n": 0, "a}\r\n": -1} {
		if got, err := literalSize([]byte(line)); got != want || err != nil {
			t.Errorf("literalSize(%q) = %d, %v; want %d", line, got, err, want)
		}
	}
	if _, err := literalSize([]byte("{x1}\r\n")); !errors.Is(err, errRelayProtocol) {
		t.Errorf("bad literal size accepted: %v", err)
	}
}

// Issue 13 item 3 at the imapd seam: the replica server goes away while a
// client IDLEs on a referred folder; the session ends with BYE at once
// (the next replica's UIDs would not be the ones the client holds).
func TestReferredIdleEndsWhenReplicaFails(t *testing.T) {
	e, ref, st2 := newReferralEnv(t)
	postTo(t, st2, "s2-pub", "/Remote", "first remote")
	c := e.login("alice", nil)
	if _, err := c.Select("Public Folders/Remote", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ref.peer.Close()
	select {
	case <-c.Closed():
	case <-time.After(30 * time.Second):
		t.Fatal("IDLE session not ended after its replica server went away")
	}
	eventually(t, 30*time.Second, "the BYE logged as a replica failure", func() bool {
		return strings.Contains(e.logs.String(), "ending the session so the client reselects on another replica")
	})
}

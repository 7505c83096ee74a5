package node

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/store"
)

func postsIn(t *testing.T, n *Node, st, path string) int {
	t.Helper()
	_, msgs, err := n.Store.Snapshot(context.Background(), store.MailboxRef{Store: st, Name: path}, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

func inboxSubjects(t *testing.T, n *Node, user string) []string {
	t.Helper()
	ref := store.MailboxRef{Store: "a1-mbx", User: user, Name: "INBOX"}
	_, msgs, err := n.Store.Snapshot(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = n.Store.BodiesOf(context.Background(), msgs, func(_ uint32, body []byte, ok bool) error {
		for _, l := range strings.Split(string(body), "\r\n") {
			if s, found := strings.CutPrefix(l, "Subject: "); found {
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Issue 13: COPY and MOVE between a referred public folder (/Sales, on
// b1) and folders of the session's own server a1, with a real client:
// the messages arrive, COPYUID names the destination's UIDs (a referred
// destination's UIDVALIDITY is the one its SELECT shows), MOVE removes the
// source only after the copy, and the R17 roles apply at both ends.
func TestReferralCopyMoveAcrossServers(t *testing.T) {
	c, _ := startReferralOrg(t)
	a1, b1 := c.Nodes["a1"], c.Nodes["b1"]
	seedPost(t, b1, "b1-pub", "/Sales", "sales one")
	seedPost(t, b1, "b1-pub", "/Sales", "sales two")
	seedPost(t, a1, "a1-pub", "/Here", "here one")
	alice := imapLogin(t, listen(c, "a1", "imap"), "alice", "alice-pw", nil)

	// Referred source, local destination (alice's INBOX).
	sales, err := alice.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	cd, err := alice.Copy(imap.SeqSetNum(1), "INBOX").Wait()
	if err != nil {
		t.Fatalf("COPY from the referred folder to INBOX: %v", err)
	}
	if got := inboxSubjects(t, a1, "alice"); len(got) != 1 || got[0] != "sales one" {
		t.Fatalf("INBOX after COPY: %q", got)
	}
	if cd.UIDValidity == 0 || len(cd.DestUIDs) != 1 || len(cd.SourceUIDs) != 1 {
		t.Fatalf("COPYUID = %+v", cd)
	}
	if n := postsIn(t, b1, "b1-pub", "/Sales"); n != 2 {
		t.Fatalf("COPY changed the source: %d posts on b1", n)
	}

	// MOVE: the copy lands, then the source post is expunged on b1.
	var expunged []uint32
	alice.Close()
	alice = imapLogin(t, listen(c, "a1", "imap"), "alice", "alice-pw", &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged = append(expunged, seq) },
	})
	if _, err := alice.Select("Public Folders/Sales", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := alice.Move(imap.SeqSetNum(2), "INBOX").Wait()
	if err != nil {
		t.Fatalf("MOVE from the referred folder to INBOX: %v", err)
	}
	if got := inboxSubjects(t, a1, "alice"); len(got) != 2 || got[1] != "sales two" {
		t.Fatalf("INBOX after MOVE: %q", got)
	}
	if n := postsIn(t, b1, "b1-pub", "/Sales"); n != 1 {
		t.Fatalf("MOVE left %d posts on b1, want 1", n)
	}
	if len(expunged) != 1 || expunged[0] != 2 || md.UIDValidity == 0 {
		t.Fatalf("MOVE told EXPUNGE %v, COPYUID %+v", expunged, md)
	}

	// Local source (/Here on a1), referred destination (/Sales on b1).
	if _, err := alice.Select("Public Folders/Here", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err = alice.Copy(imap.SeqSetNum(1), "Public Folders/Sales").Wait()
	if err != nil {
		t.Fatalf("COPY to the referred folder: %v", err)
	}
	if n := postsIn(t, b1, "b1-pub", "/Sales"); n != 2 {
		t.Fatalf("COPY to the referred folder: %d posts on b1, want 2", n)
	}
	if cd.UIDValidity != sales.UIDValidity || len(cd.DestUIDs) != 1 {
		t.Fatalf("COPYUID %+v; the referred folder's SELECT showed UIDVALIDITY %d", cd, sales.UIDValidity)
	}
	sel, err := alice.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDValidity != cd.UIDValidity {
		t.Fatalf("referred folder after COPY: %+v", sel)
	}
	msgs, err := alice.Fetch(cd.DestUIDs, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].BodySection[0].Bytes), "here one") {
		t.Fatalf("UID FETCH of COPYUID's destination UID: %v %+v", err, msgs)
	}

	// R17, source end: bob (Reviewer on /Sales) may copy out of it but not
	// move (no delete right); nothing moves.
	bob := imapLogin(t, listen(c, "a1", "imap"), "bob", "bob-pw", nil)
	if _, err := bob.Select("Public Folders/Sales", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Move(imap.SeqSetNum(1), "INBOX").Wait(); errCode(err) != "NOPERM" {
		t.Fatalf("MOVE out of a folder bob may not delete from: %v", err)
	}
	if got := inboxSubjects(t, a1, "bob"); len(got) != 0 {
		t.Fatalf("refused MOVE left copies in bob's INBOX: %q", got)
	}
	if _, err := bob.Copy(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatalf("COPY out of a folder bob may read: %v", err)
	}
	// R17, destination end: bob may not post to /Sales.
	if _, err := bob.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Copy(imap.SeqSetNum(1), "Public Folders/Sales").Wait(); errCode(err) != "NOPERM" {
		t.Fatalf("COPY into a folder bob may not post to: %v", err)
	}
	if n := postsIn(t, b1, "b1-pub", "/Sales"); n != 2 {
		t.Fatalf("refused COPY changed /Sales on b1: %d posts", n)
	}
	// carol (Contributor) posts to /Sales but cannot read it: her COPY into
	// it works.
	carol := imapLogin(t, listen(c, "a1", "imap"), "carol", "carol-pw", nil)
	body := "From: carol@ref.example\r\nSubject: from carol\r\n\r\nhi\r\n"
	app := carol.Append("INBOX", int64(len(body)), nil)
	app.Write([]byte(body))
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Copy(imap.SeqSetNum(1), "Public Folders/Sales").Wait(); err != nil {
		t.Fatalf("Contributor's COPY into a referred folder: %v", err)
	}
	if n := postsIn(t, b1, "b1-pub", "/Sales"); n != 3 {
		t.Fatalf("Contributor's COPY: %d posts on b1, want 3", n)
	}
}

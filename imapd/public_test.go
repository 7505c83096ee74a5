package imapd

import (
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func appendTo(t *testing.T, c *imapclient.Client, mailbox string, body []byte) (*imap.AppendData, error) {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(body)), nil)
	if _, err := cmd.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	return cmd.Wait()
}

// A8: posts delivered to a local replica show in the shared namespace.
func TestPublicFolderShowsDeliveredPostsA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Open", "hello folder")
	c := e.login("bob", nil)
	sel, err := c.Select("Public Folders/Open", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT public folder = %+v, %v", sel, err)
	}
	m := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true})
	if m[0].Envelope.Subject != "hello folder" {
		t.Fatalf("post subject %q", m[0].Envelope.Subject)
	}
	// A folder whose replicas are all on other servers is listed but
	// cannot be selected here.
	if _, err := c.Select("Public Folders/Remote", nil).Wait(); err == nil {
		t.Fatal("SELECT of a folder without a local replica succeeded")
	}
	if _, err := c.Select("Public Folders", nil).Wait(); err == nil {
		t.Fatal("SELECT of the public root succeeded")
	}
}

// A8: a Reviewer reads but cannot post.
func TestPublicReviewerReadsButCannotPostA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Review", "for review")
	c := e.login("bob", nil) // Default: Reviewer
	if _, err := c.Select("Public Folders/Review", nil).Wait(); err != nil {
		t.Fatalf("Reviewer SELECT: %v", err)
	}
	full := &imap.FetchItemBodySection{}
	m := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if len(m[0].FindBodySection(full)) == 0 {
		t.Fatal("Reviewer got no body")
	}
	if _, err := appendTo(t, c, "Public Folders/Review", message("nope", "x")); imapCode(err) != imap.ResponseCodeNoPerm {
		t.Fatalf("Reviewer APPEND: %v, want NOPERM", err)
	}
	// The owner may post.
	a := e.login("alice", nil)
	if _, err := appendTo(t, a, "Public Folders/Review", message("owner post", "x")); err != nil {
		t.Fatalf("Owner APPEND: %v", err)
	}
}

// A8: a Contributor may post but not read.
func TestPublicContributorPostsButCannotSelectA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Drop", "secret drop")
	c := e.login("bob", nil) // Default: Contributor
	if _, ok := listNames(t, c, "", "*")["Public Folders/Drop"]; !ok {
		t.Fatal("Contributor does not see the folder to post to")
	}
	if _, err := c.Select("Public Folders/Drop", nil).Wait(); imapCode(err) != imap.ResponseCodeNoPerm {
		t.Fatalf("Contributor SELECT: %v, want NO [NOPERM]", err)
	}
	if _, err := c.Status("Public Folders/Drop", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
		t.Fatal("Contributor STATUS succeeded")
	}
	ad, err := appendTo(t, c, "Public Folders/Drop", message("dropped", "x"))
	if err != nil || ad.UID != 2 {
		t.Fatalf("Contributor APPEND = %+v, %v", ad, err)
	}
	msgs, err := e.store.Messages(t.Context(), storeRef("/Drop"))
	if err != nil || len(msgs) != 2 || msgs[1].Class != "IPM.Post" {
		t.Fatalf("folder content %+v, %v", msgs, err)
	}
}

// A8: a user whose role is None does not see the folder at all.
func TestPublicNoneSeesNothingA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Secret", "classified")
	bob := e.login("bob", nil)
	if _, ok := listNames(t, bob, "", "*")["Public Folders/Secret"]; ok {
		t.Fatal("None role sees the folder in LIST")
	}
	if _, err := bob.Select("Public Folders/Secret", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Fatalf("None SELECT: %v, want NONEXISTENT", err)
	}
	if _, err := appendTo(t, bob, "Public Folders/Secret", message("x", "x")); err == nil {
		t.Fatal("None APPEND succeeded")
	}
	alice := e.login("alice", nil) // Owner
	if _, err := alice.Select("Public Folders/Secret", nil).Wait(); err != nil {
		t.Fatalf("Owner SELECT: %v", err)
	}
}

// A8: \Seen on a shared post is per user.
func TestPublicSeenIsPerUserA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Open", "shared post")
	alice := e.login("alice", nil)
	alice.Select("Public Folders/Open", nil).Wait()
	full := &imap.FetchItemBodySection{}
	m := fetchAll(t, alice, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{full}})
	if !hasFlag(m[0].Flags, imap.FlagSeen) {
		t.Fatalf("alice flags %v lack \\Seen after BODY[]", m[0].Flags)
	}
	bob := e.login("bob", nil)
	bob.Select("Public Folders/Open", nil).Wait()
	m = fetchAll(t, bob, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if hasFlag(m[0].Flags, imap.FlagSeen) {
		t.Fatalf("bob sees alice's \\Seen: %v", m[0].Flags)
	}
	st, err := bob.Status("Public Folders/Open", &imap.StatusOptions{NumUnseen: true}).Wait()
	if err != nil || *st.NumUnseen != 1 {
		t.Fatalf("bob STATUS UNSEEN = %+v, %v", st, err)
	}
	// Bob's \Flagged stays his.
	bob.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	alice.Noop().Wait()
	m = fetchAll(t, alice, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if hasFlag(m[0].Flags, imap.FlagFlagged) {
		t.Fatalf("alice sees bob's \\Flagged: %v", m[0].Flags)
	}
}

// Expunging a shared post removes it for everybody, so only roles with
// DeleteAll may; others' EXPUNGE removes nothing.
func TestPublicExpungeNeedsDeleteRightsA8(t *testing.T) {
	e := newEnv(t)
	e.post("/Review", "to delete")
	bob := e.login("bob", nil) // Reviewer
	bob.Select("Public Folders/Review", nil).Wait()
	bob.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if seqs, err := bob.Expunge().Collect(); err != nil || len(seqs) != 0 {
		t.Fatalf("Reviewer EXPUNGE = %v, %v; want nothing removed", seqs, err)
	}
	alice := e.login("alice", nil) // Owner
	alice.Select("Public Folders/Review", nil).Wait()
	alice.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if seqs, err := alice.Expunge().Collect(); err != nil || len(seqs) != 1 {
		t.Fatalf("Owner EXPUNGE = %v, %v", seqs, err)
	}
}

package imapd

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/referral"
	"pfrouter/store"
)

// pipeReferrer refers to a second imapd (server s2) over in-memory
// connections: the seam of the server-to-server login, which node tests
// cover with real listeners.
type pipeReferrer struct {
	dir   *directory.Directory
	ls    *linkstate.Table
	peer  *Server
	dials atomic.Int32
}

func (p *pipeReferrer) Decide(f *directory.Folder, exclude []string) referral.Decision {
	return referral.Decide(p.dir.Snapshot(), p.ls.Graph(), "s1", f, exclude)
}

func (p *pipeReferrer) Dial(ctx context.Context, server, user string) (net.Conn, error) {
	p.dials.Add(1)
	a, b := net.Pipe()
	go p.peer.ServeReferral(b, user)
	return a, nil
}

func newReferralEnv(t *testing.T) (*env, *pipeReferrer, *store.Store) {
	t.Helper()
	ref := &pipeReferrer{}
	e := newEnvWith(t, Options{Referrals: ref})
	org, err := config.Parse([]byte(testOrg), "org.yaml", ".")
	if err != nil {
		t.Fatal(err)
	}
	if ref.ls, err = linkstate.FromConfig(org); err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{ServerName: "s2", Directory: e.dir, Store: st2, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close(); st2.Close() })
	ref.dir, ref.peer = e.dir, s2
	return e, ref, st2
}

func postTo(t *testing.T, st *store.Store, storeName, path, subject string) {
	t.Helper()
	if _, _, err := st.Deliver(context.Background(), store.Delivery{Store: storeName, Folder: path, Class: "IPM.Post", Body: message(subject, "post body")}); err != nil {
		t.Fatal(err)
	}
}

// Issue 13 at the imapd seam: /Remote has its only replica on s2; a
// session on s1 selects it, reads, flags, searches, idles and expunges
// through one pooled referral connection; per-user \Seen stays on s2.
func TestReferredFolderThroughPeer(t *testing.T) {
	e, ref, st2 := newReferralEnv(t)
	postTo(t, st2, "s2-pub", "/Remote", "first remote")
	postTo(t, st2, "s2-pub", "/Remote", "second remote")

	exists := make(chan uint32, 8)
	c := e.login("alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, ok := listNames(t, c, "", "*")["Public Folders/Remote"]; !ok {
		t.Fatal("referred folder not listed")
	}
	sel, err := c.Select("Public Folders/Remote", nil).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatalf("SELECT = %+v, %v", sel, err)
	}
	full := &imap.FetchItemBodySection{}
	m := fetchAll(t, c, imap.SeqSetNum(2), &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{full}})
	if len(m) != 1 || m[0].Envelope.Subject != "second remote" || !strings.Contains(string(m[0].FindBodySection(full)), "post body") || m[0].UID == 0 {
		t.Fatalf("FETCH = %+v", m)
	}
	_, flags, err := st2.Snapshot(context.Background(), store.MailboxRef{Store: "s2-pub", Name: "/Remote"}, "alice")
	if err != nil || !store.HasFlag(flags[1].Flags, `\Seen`) || store.HasFlag(flags[0].Flags, `\Seen`) {
		t.Fatalf("alice's flags on s2: %+v %v", flags, err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil || len(sd.AllSeqNums()) != 1 || sd.AllSeqNums()[0] != 1 {
		t.Fatalf("SEARCH FLAGGED = %+v, %v", sd, err)
	}
	postTo(t, st2, "s2-pub", "/Remote", "third remote")
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 3 {
			t.Fatalf("EXISTS %d, want 3", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("IDLE did not report the new post")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()
	m = fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true})
	if len(m) != 3 {
		t.Fatalf("FETCH 1:* = %d messages", len(m))
	}
	// EXPUNGE is forwarded; the peer applies alice's rights.
	c.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	// The connection is pooled: selecting again dials nothing new.
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Public Folders/Remote", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("Public Folders/Open", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil {
		t.Fatalf("STATUS local folder during a referral = %+v, %v", st, err)
	}
	if n := ref.dials.Load(); n != 1 {
		t.Fatalf("%d referral connections for one session, want 1 (pooled)", n)
	}
	// COPY out of a referred folder (read-only selection) into this
	// server's INBOX crosses servers: fetched there, appended here.
	cd, err := c.Copy(imap.SeqSetNum(1), "INBOX").Wait()
	if err != nil || len(cd.DestUIDs) != 1 {
		t.Fatalf("COPY from a referred folder: %+v, %v", cd, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	m = fetchAll(t, c, cd.DestUIDs, &imap.FetchOptions{Envelope: true})
	if len(m) != 1 || m[0].Envelope.Subject != "first remote" {
		t.Fatalf("copied message in INBOX: %+v", m)
	}
}

// A referral session shows only public folders, never refers on, and has
// no personal folders.
func TestReferralSessionIsPublicOnly(t *testing.T) {
	e, ref, _ := newReferralEnv(t)
	// carol's mailbox is on s2; a referral session on s1 (e.srv) for her.
	a, b := net.Pipe()
	go e.srv.ServeReferral(b, "carol")
	c := imapclient.New(newPreauthed(a, a), nil)
	defer c.Close()
	names := listNames(t, c, "", "*")
	if _, ok := names["INBOX"]; ok {
		t.Fatalf("referral session lists INBOX: %v", names)
	}
	if _, ok := names["Public Folders/Open"]; !ok {
		t.Fatalf("referral session lacks Public Folders/Open: %v", names)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err == nil {
		t.Fatal("SELECT INBOX in a referral session succeeded")
	}
	// /Remote has no replica on s1: no referral from a referral session.
	if _, err := c.Select("Public Folders/Remote", nil).Wait(); err == nil {
		t.Fatal("referral session referred on")
	}
	if ref.dials.Load() != 0 {
		t.Fatal("referral session dialed a peer")
	}
}

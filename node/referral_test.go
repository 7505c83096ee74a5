package node

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"pfrouter/store"
)

// referralOrg: alice and bob have mailboxes on a1 (routing group rg-a).
// /Sales has replicas on b1 (cost 5) and c1 (cost 10), none on a1; /Blocked
// has its only replica on d1, behind a connector that forbids referrals;
// /Here is local to a1, for comparing rights.
const referralOrg = `
organization: Referral
domains: [ref.example]
secret: referral-secret-0123456789abcdef
access: {login_type: SecureLogin}
sites: [{name: s}]
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}, {name: rg-d}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 5}
  - {name: ac, between: [rg-a, rg-c], cost: 10}
  - {name: ad, between: [rg-a, rg-d], cost: 1, allow_referrals: false}
servers:
  - {name: a1, site: s, routing_group: rg-a, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: a1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}, {name: a1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: b1, site: s, routing_group: rg-b, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: b1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: c1, site: s, routing_group: rg-c, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: c1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: d1, site: s, routing_group: rg-d, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: d1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: PF, replicas: [b1-pub, c1-pub], permissions: {Default: Reviewer, alice: Owner, carol: Contributor}}
  - {path: /Here, hierarchy: PF, replicas: [a1-pub], permissions: {Default: Reviewer, alice: Owner, carol: Contributor}}
  - {path: /Blocked, hierarchy: PF, replicas: [d1-pub]}
users:
  - {name: alice, addresses: [alice@ref.example], mailbox_store: a1-mbx, password: alice-pw}
  - {name: bob, addresses: [bob@ref.example], mailbox_store: a1-mbx, password: bob-pw}
  - {name: carol, addresses: [carol@ref.example], mailbox_store: a1-mbx, password: carol-pw}
`

func startReferralOrg(t *testing.T) (*Cluster, *logBuf) {
	t.Helper()
	org := parseOrg(t, referralOrg)
	logs := &logBuf{}
	c, err := StartAll(t.Context(), org, nil, Options{BaseDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, logs
}

// seedPost puts a post straight into a replica (as delivery or
// replication would).
func seedPost(t *testing.T, n *Node, st, path, subject string) {
	t.Helper()
	ref := store.MailboxRef{Store: st, Name: path}
	ctx := context.Background()
	if err := n.Store.EnsureMailbox(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("From: x@ref.example\r\nSubject: %s\r\nMessage-Id: <%s@ref.example>\r\n\r\nbody of %s\r\n", subject, strings.ReplaceAll(subject, " ", "."), subject)
	if _, _, err := n.Store.Append(ctx, ref, []byte(body), store.AppendOptions{Class: "IPM.Post"}); err != nil {
		t.Fatal(err)
	}
}

func fetchBody(t *testing.T, c *imapclient.Client, seq uint32) string {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH %d: %v (%d messages)", seq, err, len(msgs))
	}
	for _, b := range msgs[0].BodySection {
		return string(b.Bytes)
	}
	return ""
}

func flagsOf(t *testing.T, n *Node, st, path, user string) [][]string {
	t.Helper()
	_, msgs, err := n.Store.Snapshot(context.Background(), store.MailboxRef{Store: st, Name: path}, user)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Flags
	}
	return out
}

// Issue 13: a user on a server without a replica reads, flags, searches,
// posts to and idles on a folder whose replica is across a connector; the
// folder whose only path forbids referrals stays \Noselect with a reason
// in the log.
func TestReferralReadFlagSearchIdle(t *testing.T) {
	c, logs := startReferralOrg(t)
	b1 := c.Nodes["b1"]
	seedPost(t, b1, "b1-pub", "/Sales", "from-b1 one")
	seedPost(t, b1, "b1-pub", "/Sales", "from-b1 two")

	exists := make(chan uint32, 16)
	alice := imapLogin(t, listen(c, "a1", "imap"), "alice", "alice-pw", &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	})
	list, err := alice.List("", "Public Folders/*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		attrs[l.Mailbox] = l.Attrs
	}
	if hasAttr(attrs["Public Folders/Sales"], imap.MailboxAttrNoSelect) {
		t.Fatalf("referred folder listed \\Noselect: %v", attrs)
	}
	if !hasAttr(attrs["Public Folders/Blocked"], imap.MailboxAttrNoSelect) {
		t.Fatalf("folder behind allow_referrals: false not \\Noselect: %v", attrs)
	}
	if _, err := alice.Select("Public Folders/Blocked", nil).Wait(); err == nil {
		t.Fatal("SELECT of the folder behind allow_referrals: false succeeded")
	}
	if !strings.Contains(logs.String(), "allow_referrals: false") {
		t.Fatal("no reason with allow_referrals in the log")
	}

	sel, err := alice.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT referred folder: %v", err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("SELECT: %d messages, want 2", sel.NumMessages)
	}
	if body := fetchBody(t, alice, 1); !strings.Contains(body, "from-b1 one") {
		t.Fatalf("FETCH body %q", body)
	}
	// Per-user \Seen is kept on the replica's server for alice only.
	if f := flagsOf(t, b1, "b1-pub", "/Sales", "alice"); !store.HasFlag(f[0], `\Seen`) {
		t.Fatalf("alice's flags on b1 %v lack \\Seen after BODY[]", f)
	}
	if f := flagsOf(t, b1, "b1-pub", "/Sales", "bob"); store.HasFlag(f[0], `\Seen`) {
		t.Fatalf("bob sees alice's \\Seen: %v", f)
	}
	msgs, err := alice.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	if err != nil || len(msgs) != 1 || !hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("STORE: %+v, %v", msgs, err)
	}
	sd, err := alice.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil || fmt.Sprint(sd.AllSeqNums()) != "[2]" {
		t.Fatalf("SEARCH FLAGGED = %v, %v", sd, err)
	}
	sd, err = alice.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "two"}}}, nil).Wait()
	if err != nil || len(sd.AllUIDs()) != 1 {
		t.Fatalf("UID SEARCH SUBJECT = %v, %v", sd, err)
	}
	// APPEND by the owner lands on the replica.
	post := "From: alice@ref.example\r\nSubject: alice posts\r\n\r\nhello\r\n"
	ac := alice.Append("Public Folders/Sales", int64(len(post)), nil)
	ac.Write([]byte(post))
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	waitMessage(t, b1, store.MailboxRef{Store: "b1-pub", Name: "/Sales"}, "alice posts", 10*time.Second)
	if err := alice.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	drain := func() {
		for {
			select {
			case <-exists:
			default:
				return
			}
		}
	}
	drain()
	// IDLE: a post arriving on the replica is pushed to the reader.
	idle, err := alice.Idle()
	if err != nil {
		t.Fatal(err)
	}
	seedPost(t, b1, "b1-pub", "/Sales", "from-b1 during idle")
	select {
	case n := <-exists:
		if n != 4 {
			t.Fatalf("IDLE EXISTS %d, want 4", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if body := fetchBody(t, alice, 4); !strings.Contains(body, "during idle") {
		t.Fatalf("FETCH after IDLE %q", body)
	}
	st, err := alice.Status("Public Folders/Sales", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 4 {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// R17 on a referred folder is exactly R17 on a local one: the same
// commands by the same roles get the same answers on /Here (local to a1)
// and /Sales (referred to b1).
func TestReferralRightsR17(t *testing.T) {
	c, _ := startReferralOrg(t)
	seedPost(t, c.Nodes["a1"], "a1-pub", "/Here", "local post")
	seedPost(t, c.Nodes["b1"], "b1-pub", "/Sales", "remote post")
	type outcome struct{ selectOK, fetchOK, appendOK, expunged string }
	run := func(user, pw, folder string) outcome {
		cl := imapLogin(t, listen(c, "a1", "imap"), user, pw, nil)
		var o outcome
		_, err := cl.Select(folder, nil).Wait()
		o.selectOK = errCode(err)
		if err == nil {
			_, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
			o.fetchOK = errCode(err)
			cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
			seqs, err := cl.Expunge().Collect()
			o.expunged = fmt.Sprintf("%d %s", len(seqs), errCode(err))
		}
		msg := "Subject: x\r\n\r\nx\r\n"
		ac := cl.Append(folder, int64(len(msg)), nil)
		ac.Write([]byte(msg))
		ac.Close()
		_, err = ac.Wait()
		o.appendOK = errCode(err)
		return o
	}
	for _, u := range []struct{ name, pw string }{{"bob", "bob-pw"}, {"carol", "carol-pw"}, {"alice", "alice-pw"}} {
		local := run(u.name, u.pw, "Public Folders/Here")
		remote := run(u.name, u.pw, "Public Folders/Sales")
		if local != remote {
			t.Errorf("%s: local %+v, referred %+v", u.name, local, remote)
		}
		t.Logf("%s: %+v", u.name, remote)
	}
	// And the roles did what R17 says (so equality is not vacuous).
	if o := run("bob", "bob-pw", "Public Folders/Sales"); o.selectOK != "OK" || o.appendOK != "NOPERM" || o.expunged != "0 OK" {
		t.Errorf("Reviewer on a referred folder: %+v", o)
	}
	if o := run("carol", "carol-pw", "Public Folders/Sales"); o.selectOK != "NOPERM" || o.appendOK != "OK" {
		t.Errorf("Contributor on a referred folder: %+v", o)
	}
}

func errCode(err error) string {
	if err == nil {
		return "OK"
	}
	var ie *imap.Error
	if e, ok := err.(*imap.Error); ok {
		ie = e
		if ie.Code != "" {
			return string(ie.Code)
		}
		return string(ie.Type)
	}
	return err.Error()
}

// startReplicatingReferralOrg is referralOrg with b1 and c1 replicating
// /Sales to each other.
func startReplicatingReferralOrg(t *testing.T) *Cluster {
	t.Helper()
	yaml := referralOrg
	for _, s := range []string{"b1", "c1"} {
		old := "{name: " + s + ", site: s, routing_group: rg-" + s[:1] + `, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"}`
		if !strings.Contains(yaml, old) {
			t.Fatalf("referralOrg changed: no %q", old)
		}
		yaml = strings.Replace(yaml, old, strings.TrimSuffix(old, "}")+`, replication: "127.0.0.1:0"}`, 1)
	}
	return startOrg(t, yaml)
}

// R10 for readers, issue 13 item 3: the replica server of an open session
// stops. The session's next command ends it with "* BYE" (another replica
// has other UIDs, which IMAP cannot announce inside a selection); the
// client logs in again, is referred to the other replica, and SELECT shows
// a different UIDVALIDITY, so a client that caches by UID resynchronizes.
// The flag set before the failure is not lost: it reached the other
// replica by replication.
func TestReferralFailover(t *testing.T) {
	c := startReplicatingReferralOrg(t)
	seedPost(t, c.Nodes["b1"], "b1-pub", "/Sales", "from-b1 one")
	waitFor(t, "the post replicated to c1", func() bool {
		_, msgs, err := c.Nodes["c1"].Store.Snapshot(context.Background(), store.MailboxRef{Store: "c1-pub", Name: "/Sales"}, "alice")
		return err == nil && len(msgs) == 1
	})

	alice := imapLogin(t, listen(c, "a1", "imap"), "alice", "alice-pw", nil)
	sel, err := alice.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if body := fetchBody(t, alice, 1); !strings.Contains(body, "from-b1") {
		t.Fatalf("first referral not to b1 (lowest cost): %q", body)
	}
	if _, err := alice.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	// The same replica gives the same UIDVALIDITY every time.
	st, err := alice.Status("Public Folders/Sales", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil || st.UIDValidity != sel.UIDValidity {
		t.Fatalf("STATUS UIDVALIDITY %v (%v), SELECT gave %d", st, err, sel.UIDValidity)
	}
	waitFor(t, "alice's flag replicated to c1", func() bool {
		f := flagsOf(t, c.Nodes["c1"], "c1-pub", "/Sales", "alice")
		return len(f) == 1 && store.HasFlag(f[0], `\Flagged`)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Nodes["b1"].Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = alice.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err == nil {
		t.Fatal("FETCH after the replica server stopped succeeded on the old view")
	}
	select {
	case <-alice.Closed():
	case <-time.After(30 * time.Second):
		t.Fatalf("session not ended after its replica server failed (FETCH: %v)", err)
	}

	again := imapLogin(t, listen(c, "a1", "imap"), "alice", "alice-pw", nil)
	sel2, err := again.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT after failover: %v", err)
	}
	if sel2.UIDValidity == sel.UIDValidity {
		t.Fatalf("UIDVALIDITY %d unchanged after failing over to another replica", sel.UIDValidity)
	}
	msgs, err := again.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH on c1: %v, %d messages", err, len(msgs))
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("flag set before the failover lost: %v", msgs[0].Flags)
	}
	if f := flagsOf(t, c.Nodes["c1"], "c1-pub", "/Sales", "alice"); len(f) != 1 {
		t.Fatalf("c1 holds %d posts, want the one replicated", len(f))
	}
	// Another user's new session goes to c1 at once.
	bob := imapLogin(t, listen(c, "a1", "imap"), "bob", "bob-pw", nil)
	if _, err := bob.Select("Public Folders/Sales", nil).Wait(); err != nil {
		t.Fatalf("new session SELECT: %v", err)
	}
	if body := fetchBody(t, bob, 1); !strings.Contains(body, "from-b1") {
		t.Fatalf("new session on c1 does not read the replicated post: %q", body)
	}
}

// Python's imaplib reads, flags and searches a referred folder.
func TestReferralPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	c, _ := startReferralOrg(t)
	seedPost(t, c.Nodes["b1"], "b1-pub", "/Sales", "from-b1 python")
	host, port, _ := strings.Cut(listen(c, "a1", "imap"), ":")
	script := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.starttls(ssl_context=ctx)
m.login("alice", "alice-pw")
typ, data = m.select('"Public Folders/Sales"')
print("select", typ, data[0].decode())
typ, data = m.fetch("1", "(RFC822)")
print("fetch", typ, b"from-b1 python" in data[0][1])
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
print("store", typ, b"\\Flagged" in data[0])
typ, data = m.search(None, "FLAGGED")
print("search", typ, data[0].decode())
m.logout()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	want := "select OK 1\nfetch OK True\nstore OK True\nsearch OK 1\n"
	if string(out) != want {
		t.Fatalf("imaplib output\n%s\nwant\n%s", out, want)
	}
}

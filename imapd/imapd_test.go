package imapd

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func listNames(t *testing.T, c *imapclient.Client, ref, pattern string) map[string][]imap.MailboxAttr {
	t.Helper()
	list, err := c.List(ref, pattern, nil).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	out := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		out[l.Mailbox] = l.Attrs
	}
	return out
}

func TestListSpecialUseAndNamespaceA8(t *testing.T) {
	e := newEnv(t)
	c := e.login("alice", nil)
	got := listNames(t, c, "", "*")
	for name, attr := range map[string]imap.MailboxAttr{
		"INBOX": "", "Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk,
		"Public Folders": imap.MailboxAttrNoSelect, "Public Folders/Open": imap.MailboxAttrHasChildren,
		"Public Folders/Open/Child": "", "Public Folders/Review": "", "Public Folders/Drop": "",
		"Public Folders/Secret": "", "Public Folders/Remote": imap.MailboxAttrNoSelect,
	} {
		attrs, ok := got[name]
		if !ok {
			t.Errorf("LIST lacks %q (got %v)", name, got)
			continue
		}
		if attr != "" && !slices.Contains(attrs, attr) {
			t.Errorf("%s attrs %v lack %s", name, attrs, attr)
		}
	}
	if slices.Contains(got["Public Folders/Open"], imap.MailboxAttrNoSelect) {
		t.Error("folder with a local replica listed \\Noselect")
	}
	// "%" lists one level.
	top := listNames(t, c, "Public Folders/", "%")
	if _, ok := top["Public Folders/Open"]; !ok || len(top) != 6 {
		t.Errorf(`LIST "Public Folders/" "%%" = %v`, top)
	}
	ns, err := c.Namespace().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Personal) != 1 || ns.Personal[0].Prefix != "" || len(ns.Shared) != 1 || ns.Shared[0].Prefix != "Public Folders/" {
		t.Fatalf("NAMESPACE = %+v", ns)
	}
}

func TestSelectFetchHeadersThenBodiesA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "one", "first body")
	e.deliver("alice", "two", "second body")
	c := e.login("alice", nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v", sel)
	}
	// Headers first, without touching \Seen.
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{hdr},
	})
	if len(msgs) != 2 || msgs[0].Envelope.Subject != "one" || msgs[1].Envelope.Subject != "two" {
		t.Fatalf("envelopes: %+v", msgs)
	}
	if msgs[0].UID != 1 || msgs[0].RFC822Size == 0 || msgs[0].InternalDate.IsZero() || msgs[0].BodyStructure == nil {
		t.Fatalf("fetch items: %+v", msgs[0])
	}
	if bs, ok := msgs[0].BodyStructure.(*imap.BodyStructureSinglePart); !ok || bs.Type != "text" {
		t.Fatalf("BODYSTRUCTURE = %#v", msgs[0].BodyStructure)
	}
	if h := msgs[0].FindBodySection(hdr); !bytes.Contains(h, []byte("Subject: one")) || bytes.Contains(h, []byte("first body")) {
		t.Fatalf("BODY.PEEK[HEADER] = %q", h)
	}
	if hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatal("BODY.PEEK set \\Seen")
	}
	// Then the body: BODY[] sets \Seen.
	full := &imap.FetchItemBodySection{}
	msgs = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if b := msgs[0].FindBodySection(full); !bytes.Contains(b, []byte("first body")) {
		t.Fatalf("BODY[] = %q", b)
	}
	if !hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("BODY[] did not report \\Seen: %v", msgs[0].Flags)
	}
	// Partial fetch.
	part := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 10}}
	msgs = fetchAll(t, c, imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{part}})
	if b := msgs[0].FindBodySection(part); string(b) != "From: Send" {
		t.Fatalf("BODY[]<0.10> = %q", b)
	}
	// UID FETCH with "*".
	msgs = fetchAll(t, c, imap.UIDSet{imap.UIDRange{Start: 2, Stop: 0}}, &imap.FetchOptions{Flags: true})
	if len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].SeqNum != 2 {
		t.Fatalf("UID FETCH 2:* = %+v", msgs)
	}
}

func TestStoreAndSearchA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "apples", "red fruit")
	e.deliver("alice", "pears", "green fruit")
	e.deliver("alice", "plums", "purple fruit")
	c := e.login("alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || !hasFlag(msgs[0].Flags, imap.FlagFlagged) || !hasFlag(msgs[0].Flags, "$Work") {
		t.Fatalf("STORE = %+v, %v", msgs, err)
	}
	search := func(cr *imap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.Search(cr, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.AllSeqNums()
	}
	if got := search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH FLAGGED = %v", got)
	}
	if got := search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagFlagged}}); !slices.Equal(got, []uint32{1, 3}) {
		t.Errorf("SEARCH UNFLAGGED = %v", got)
	}
	if got := search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "PLUMS"}}}); !slices.Equal(got, []uint32{3}) {
		t.Errorf("SEARCH SUBJECT plums = %v", got)
	}
	if got := search(&imap.SearchCriteria{Body: []string{"green"}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH BODY green = %v", got)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{Text: []string{"fruit"}, Not: []imap.SearchCriteria{{Flag: []imap.Flag{"$Work"}}}}, nil).Wait()
	if err != nil || !slices.Equal(d.AllUIDs(), []imap.UID{1, 3}) {
		t.Errorf("UID SEARCH TEXT fruit NOT KEYWORD $Work = %v, %v", d, err)
	}
	// Flags stick across sessions.
	c2 := e.login("alice", nil)
	c2.Select("INBOX", nil).Wait()
	msgs = fetchAll(t, c2, imap.SeqSetNum(2), &imap.FetchOptions{Flags: true})
	if !hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("second session flags %v", msgs[0].Flags)
	}
}

func TestCopyMoveA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "keep", "x")
	e.deliver("alice", "move", "y")
	c := e.login("alice", nil)
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Select("INBOX", nil).Wait()
	cd, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.DestUIDs.String() != "1" {
		t.Fatalf("COPY = %+v, %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("COPY to missing mailbox: %v, want TRYCREATE", err)
	}
	md, err := c.Move(imap.UIDSetNum(2), "Archive").Wait()
	if err != nil || md.DestUIDs.String() != "2" {
		t.Fatalf("MOVE = %+v, %v", md, err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Fatalf("INBOX has %d messages after MOVE, want 1", n)
	}
	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 {
		t.Fatalf("STATUS Archive = %+v, %v", st, err)
	}
}

func TestExpungeOrderingA7(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.deliver("alice", string(rune('a'+i)), "x")
	}
	c := e.login("alice", nil)
	c.Select("INBOX", nil).Wait()
	if err := c.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	// Highest first, so each number is valid when the client applies it.
	if !slices.Equal(seqs, []uint32{4, 2}) {
		t.Fatalf("EXPUNGE responses %v, want [4 2]", seqs)
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true})
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []imap.UID{1, 3, 5}) {
		t.Fatalf("UIDs after expunge %v", uids)
	}
}

// Another session's expunge is not announced during FETCH (sequence numbers
// must not shift under the client) but at the next NOOP.
func TestExpungeFromOtherSessionWaitsForNoopA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	e.deliver("alice", "b", "x")
	expunged := make(chan uint32, 10)
	a := e.login("alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	a.Select("INBOX", nil).Wait()
	b := e.login("alice", nil)
	b.Select("INBOX", nil).Wait()
	b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, a, imap.SeqSetNum(2), &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 2 || len(expunged) != 0 {
		t.Fatalf("FETCH 2 during pending expunge = %+v, expunges %d", msgs, len(expunged))
	}
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Fatalf("EXPUNGE %d, want 1", seq)
		}
	default:
		t.Fatal("NOOP did not report the expunge")
	}
}

func TestAppendA7(t *testing.T) {
	e := newEnv(t)
	c := e.login("alice", nil)
	body := message("appended", "hello")
	when := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	cmd := c.Append("Drafts", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, imap.FlagSeen}, Time: when})
	cmd.Write(body)
	cmd.Close()
	ad, err := cmd.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPEND = %+v, %v", ad, err)
	}
	c.Select("Drafts", nil).Wait()
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true})
	if !hasFlag(msgs[0].Flags, imap.FlagDraft) || !msgs[0].InternalDate.Equal(when) || msgs[0].RFC822Size != int64(len(body)) {
		t.Fatalf("appended message %+v", msgs[0])
	}
	cmd = c.Append("NoSuchBox", int64(len(body)), nil)
	cmd.Write(body)
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("APPEND to missing mailbox: %v, want TRYCREATE", err)
	}
}

func TestCreateRenameDeleteA7(t *testing.T) {
	e := newEnv(t)
	c := e.login("alice", nil)
	if err := c.Create("Projects/2025", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := listNames(t, c, "", "Projects*")
	if _, ok := got["Projects"]; !ok {
		t.Fatalf("parent not created: %v", got)
	}
	if err := c.Create("Projects", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Fatalf("CREATE existing: %v", err)
	}
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got = listNames(t, c, "", "*")
	if _, ok := got["Work/2025"]; !ok {
		t.Fatalf("inferior not renamed: %v", got)
	}
	if _, ok := got["Projects"]; ok {
		t.Fatalf("old name still listed: %v", got)
	}
	if err := c.Delete("Work/2025").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Work/2025", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Fatalf("SELECT deleted: %v", err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("DELETE INBOX succeeded")
	}
	if err := c.Create("Public Folders/Mine", nil).Wait(); imapCode(err) != imap.ResponseCodeNoPerm {
		t.Fatalf("CREATE in public namespace: %v, want NOPERM", err)
	}
	// Subscriptions: LSUB-style listing.
	if err := c.Subscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || len(subs) != 6 || !slices.ContainsFunc(subs, func(l *imap.ListData) bool { return l.Mailbox == "Work" }) {
		t.Fatalf("LIST (SUBSCRIBED) = %+v, %v", subs, err)
	}
}

func TestUIDValidityAndUIDNextSurviveRestartA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	e.deliver("alice", "b", "x")
	c := e.login("alice", nil)
	before, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.restart()
	c = e.login("alice", nil)
	after, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if after.UIDValidity != before.UIDValidity || after.UIDNext != before.UIDNext || after.NumMessages != 2 {
		t.Fatalf("after restart %+v, before %+v", after, before)
	}
	if uid := e.deliver("alice", "c", "x"); imap.UID(uid) != before.UIDNext {
		t.Fatalf("next delivery got UID %d, want %d", uid, before.UIDNext)
	}
}

func TestRecentFirstSessionOnlyA7(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	a := e.login("alice", nil)
	a.Select("INBOX", nil).Wait()
	if m := fetchAll(t, a, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}); !hasFlag(m[0].Flags, `\Recent`) {
		t.Fatalf("first session flags %v lack \\Recent", m[0].Flags)
	}
	b := e.login("alice", nil)
	b.Select("INBOX", nil).Wait()
	if m := fetchAll(t, b, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}); hasFlag(m[0].Flags, `\Recent`) {
		t.Fatalf("second session sees \\Recent: %v", m[0].Flags)
	}
	e.deliver("alice", "b", "x")
	b.Noop().Wait() // b sees it first now
	a.Noop().Wait()
	if m := fetchAll(t, b, imap.SeqSetNum(2), &imap.FetchOptions{Flags: true}); !hasFlag(m[0].Flags, `\Recent`) {
		t.Fatalf("session that saw the new message first lacks \\Recent: %v", m[0].Flags)
	}
	if m := fetchAll(t, a, imap.SeqSetNum(2), &imap.FetchOptions{Flags: true}); hasFlag(m[0].Flags, `\Recent`) {
		t.Fatalf("later session sees \\Recent: %v", m[0].Flags)
	}
	// Search RECENT agrees.
	d, err := b.Search(&imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil).Wait()
	if err != nil || !slices.Equal(d.AllSeqNums(), []uint32{2}) {
		t.Fatalf("SEARCH RECENT = %v, %v", d, err)
	}
}

func TestIdlePushesDeliveryA9(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	exists := make(chan uint32, 10)
	c := e.login("alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for len(exists) > 0 {
		<-exists
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.deliver("alice", "pushed", "x")
	select {
	case n := <-exists:
		if n != 2 {
			t.Fatalf("EXISTS %d, want 2", n)
		}
		t.Logf("EXISTS pushed %v after delivery", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("IDLE did not push EXISTS within a second of delivery (A9)")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyExamine(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "x")
	c := e.login("alice", nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{}
	m := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{full}})
	if hasFlag(m[0].Flags, imap.FlagSeen) {
		t.Fatal("BODY[] under EXAMINE set \\Seen")
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err == nil {
		t.Fatal("STORE under EXAMINE succeeded")
	}
	if !strings.Contains(string(m[0].FindBodySection(full)), "Subject: a") {
		t.Fatal("EXAMINE fetch body wrong")
	}
}

package replication

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"pfrouter/directory"
	"pfrouter/store"
)

// An idle server's replication manager makes no pass: the plan and the
// reconciliation of its replicas with the directory (tens of milliseconds
// a second for 5,000 folders when it ran every second) run only when what
// they read changed: the directory, the store's mailboxes, a source
// server's reachability. Each change below is made without Kick.
func TestManagerPassesOnlyOnChange(t *testing.T) {
	var linkUp atomic.Bool
	linkUp.Store(true)
	srv := startServersWith(t, twoServers, func(server string, o *Options) {
		if server == "a" {
			o.Reachable = func(string) bool { return linkUp.Load() }
		}
	}, "a", "b")
	a := srv["a"]
	ctx := context.Background()
	body := []byte("Message-ID: <m1@t>\r\nSubject: p\r\n\r\nbody\r\n")
	if _, _, err := srv["b"].st.Deliver(ctx, store.Delivery{Store: "b-pub", Folder: "/Sales", ID: "m1", Class: "IPM.Post", Body: body}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a-pub to hold the post", func() bool {
		return len(digests(t, a.st, store.MailboxRef{Store: "a-pub", Name: "/Sales"})) == 1
	})

	idle := func(what string) {
		t.Helper()
		// The replica's creation and tagging above (or the change just
		// made) cause a pass or two; then nothing may.
		time.Sleep(1500 * time.Millisecond)
		p0 := a.svc.passes.Load()
		time.Sleep(2 * time.Second)
		if n := a.svc.passes.Load() - p0; n != 0 {
			t.Fatalf("%s: %d passes in 2 s with nothing changing", what, n)
		}
	}
	changed := func(what string, change func(), done func() bool) {
		t.Helper()
		p0 := a.svc.passes.Load()
		change()
		waitFor(t, what, func() bool { return a.svc.passes.Load() > p0 && (done == nil || done()) })
	}

	idle("after the first post")

	key := directory.FolderKey("PF", "/Sales")
	changed("a directory change (a folder renamed) to rename a's replicas", func() {
		if err := a.dir.RenameFolders(map[string]string{key: "/Revenue"}, directory.Rev{Version: 1, Origin: "a"}); err != nil {
			t.Fatal(err)
		}
	}, func() bool {
		return a.st.MailboxExists(ctx, store.MailboxRef{Store: "a-pub", Name: "/Revenue"}) &&
			!a.st.MailboxExists(ctx, store.MailboxRef{Store: "a-pub", Name: "/Sales"})
	})
	idle("after the rename")

	changed("a mailbox change in a's store to make a pass", func() {
		if err := a.st.CreateMailbox(ctx, store.MailboxRef{Store: "a-pub", Name: "/Stray"}, ""); err != nil {
			t.Fatal(err)
		}
	}, nil)
	idle("after the mailbox change")

	changed("the source server becoming unreachable to make a pass", func() { linkUp.Store(false) }, nil)
	idle("while partitioned")
	changed("the source server reachable again to make a pass", func() { linkUp.Store(true) }, nil)

	// And replication still works after all that.
	body = []byte(fmt.Sprintf("Message-ID: <m2@t>\r\nSubject: p\r\n\r\nbody %d\r\n", 2))
	if err := srv["b"].dir.RenameFolders(map[string]string{key: "/Revenue"}, directory.Rev{Version: 1, Origin: "a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's replica renamed", func() bool {
		return srv["b"].st.MailboxExists(ctx, store.MailboxRef{Store: "b-pub", Name: "/Revenue"})
	})
	if _, _, err := srv["b"].st.Deliver(ctx, store.Delivery{Store: "b-pub", Folder: "/Revenue", ID: "m2", Class: "IPM.Post", Body: body}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a-pub to hold both posts under the new name", func() bool {
		return len(digests(t, a.st, store.MailboxRef{Store: "a-pub", Name: "/Revenue"})) == 2
	})
}

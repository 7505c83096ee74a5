package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/admin"
	"pfrouter/hierarchy"
	"pfrouter/routing"
	"pfrouter/store"
)

// replOrg: two routing groups joined by connector ab; /Sales is replicated
// on s1-pub and s2-pub, both servers replicate over listen.replication.
const replOrg = `
organization: Repl
domains: [repl.example]
secret: repl-secret-0123456789-0123456789-abcdef
routing: {store_min_age: 0s, retry_initial: 200ms, retry_max: 1s, probe_interval: 500ms, hold_down: 200ms, failure_threshold: 2}
routing_groups: [{name: rg-a}, {name: rg-b}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10}
servers:
  - name: s1
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", replication: "127.0.0.1:0"}
    stores:
      - {name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
      - {name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}
  - name: s2
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0", replication: "127.0.0.1:0"}
    stores:
      - {name: s2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
      - {name: s2-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: PF, addresses: [sales@repl.example], replicas: [s1-pub, s2-pub], permissions: {Default: Author, Anonymous: Contributor, bob: Editor}}
users:
  - {name: alice, addresses: [alice@repl.example], mailbox_store: s1-mbx, password: alice-pw}
  - {name: bob, addresses: [bob@repl.example], mailbox_store: s2-mbx, password: bob-pw}
`

var (
	sales1 = store.MailboxRef{Store: "s1-pub", Name: "/Sales"}
	sales2 = store.MailboxRef{Store: "s2-pub", Name: "/Sales"}
)

// replicaContents maps Message-ID to the SHA-256 of the whole message, and
// counts messages (a post held twice shows as count > len(map)).
func replicaContents(n *Node, ref store.MailboxRef) (map[string][32]byte, int) {
	ctx := context.Background()
	msgs, err := n.Store.Messages(ctx, ref)
	if err != nil {
		return nil, 0
	}
	out := map[string][32]byte{}
	read := 0
	for _, m := range msgs {
		b, err := n.Store.Body(ctx, ref, m.UID)
		if err != nil {
			continue // expunged since the listing (a replicated delete)
		}
		read++
		id := ""
		if msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(b))); err == nil {
			id = msg.Header.Get("Message-Id")
		}
		out[id] = sha256.Sum256(b)
	}
	return out, read
}

// waitReplicas waits until both replicas hold the same want messages,
// each once, byte for byte.
func waitReplicas(t *testing.T, c *Cluster, want int) map[string][32]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, na := replicaContents(c.Nodes["s1"], sales1)
		b, nb := replicaContents(c.Nodes["s2"], sales2)
		if na == want && nb == want && len(a) == want && maps.Equal(a, b) {
			return a
		}
		if len(a) < na || len(b) < nb {
			t.Fatalf("a replica holds a post twice: s1-pub %d messages (%d distinct), s2-pub %d (%d)", na, len(a), nb, len(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge on %d posts: s1-pub %d, s2-pub %d", want, na, nb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Issue 12: a post delivered into one replica reaches the other replica,
// where a user of that replica's server reads it over IMAP; posts entering
// at either side converge to the same messages (Message-ID and body
// digest), each held once.
func TestReplicationPostReadOnOtherReplica(t *testing.T) {
	c := startOrg(t, replOrg)
	id1, err := post(t, c.Nodes["s1"], "someone@example.net", "sales@repl.example", "from s1")
	if err != nil {
		t.Fatal(err)
	}
	// Entering at s1, step 2 takes the local replica (R7): only
	// replication can bring it to s2-pub.
	waitMessage(t, c.Nodes["s1"], sales1, id1, 20*time.Second)
	waitMessage(t, c.Nodes["s2"], sales2, id1, 30*time.Second)
	id2, err := post(t, c.Nodes["s2"], "someone@example.net", "sales@repl.example", "from s2")
	if err != nil {
		t.Fatal(err)
	}
	got := waitReplicas(t, c, 2)
	for _, id := range []string{id1, id2} {
		if _, ok := got[id]; !ok {
			t.Fatalf("converged replicas lack %s", id)
		}
	}
	// bob's mailbox is on s2: his IMAP session reads s2-pub.
	cl := imapLogin(t, listen(c, "s2", "imap"), "bob", "bob-pw", nil)
	sel, err := cl.Select("Public Folders/Sales", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("bob sees %d messages in Public Folders/Sales, want 2", sel.NumMessages)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Envelope.MessageID] = true
	}
	for _, id := range []string{id1, id2} {
		if !seen[id[1:len(id)-1]] {
			t.Fatalf("bob's FETCH lacks %s: %v", id, seen)
		}
	}
	// An expunge over IMAP on s2 reaches s1.
	if err := cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, c, 1)
}

// Partition (issue 12): with connector ab down, posts enter on both sides
// and stay in their local replica; when it is up again both replicas
// converge on every post, none held twice.
func TestReplicationPartitionConverges(t *testing.T) {
	c := startOrg(t, replOrg)
	for _, n := range c.Nodes {
		if _, err := n.LinkState.SetUp("ab", false, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		n.Replication.Kick()
	}
	var ids []string
	for i := range 3 {
		for _, s := range []string{"s1", "s2"} {
			id, err := post(t, c.Nodes[s], "someone@example.net", "sales@repl.example", fmt.Sprintf("partition %s %d", s, i))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	waitMessage(t, c.Nodes["s1"], sales1, ids[4], 20*time.Second)
	waitMessage(t, c.Nodes["s2"], sales2, ids[5], 20*time.Second)
	time.Sleep(500 * time.Millisecond) // give a replication leak a chance to show
	if _, n := replicaContents(c.Nodes["s1"], sales1); n != 3 {
		t.Fatalf("s1-pub holds %d posts while partitioned, want its own 3", n)
	}
	// replica status reads both sides live: each replica lacks the other's 3 posts.
	st, err := c.Nodes["s1"].Replication.FolderStatus(context.Background(), "PF", "/Sales")
	if err != nil {
		t.Fatal(err)
	}
	if st.InSync || len(st.Replicas) != 2 {
		t.Fatalf("status while partitioned: %+v", st)
	}
	for _, r := range st.Replicas {
		if r.InSync || r.Behind != 3 || r.Messages != 3 || r.Error != "" {
			t.Fatalf("status of %s while partitioned: %+v, want 3 messages, 3 behind", r.Store, r)
		}
	}
	for _, n := range c.Nodes {
		if _, err := n.LinkState.SetUp("ab", true, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		n.Replication.Kick()
	}
	got := waitReplicas(t, c, 6)
	for _, id := range ids {
		if _, ok := got[id]; !ok {
			t.Fatalf("converged replicas lack %s", id)
		}
	}
	eventually(t, 30*time.Second, "status in sync", func() (bool, string) {
		st, err := c.Nodes["s2"].Replication.FolderStatus(context.Background(), "PF", "/Sales")
		return err == nil && st.InSync && st.Replicas[0].Behind == 0 && st.Replicas[1].Messages == 6, fmt.Sprintf("%+v %v", st, err)
	})
}

// replOrg3 adds s3 in rg-c, reached only over connector bc, with no public
// store of its own; every server has an admin API and a gossip member.
const replOrg3 = `
organization: Repl
domains: [repl.example]
secret: repl-secret-0123456789-0123456789-abcdef
routing: {store_min_age: 0s, retry_initial: 200ms, retry_max: 1s, probe_interval: 500ms, hold_down: 200ms, failure_threshold: 2}
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10}
  - {name: bc, between: [rg-b, rg-c], cost: 10}
servers:
  - name: s1
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0", gossip: "127.0.0.1:0", replication: "127.0.0.1:0"}
    stores: [{name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: s2
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0", gossip: "127.0.0.1:0", replication: "127.0.0.1:0"}
    stores: [{name: s2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: s3
    site: one
    routing_group: rg-c
    listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0", gossip: "127.0.0.1:0", replication: "127.0.0.1:0"}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: PF, addresses: [sales@repl.example], replicas: [s1-pub, s2-pub]}
`

// Issue 12 (readiness beats age, R6): a public store added at run time is
// skipped by step 1 with "hierarchy not yet replicated" — even on its own
// server and with store_min_age 0 — until its server has confirmed it
// holds the hierarchy; given a replica, it backfills the folder's content.
func TestReplicationRuntimeStoreBackfillsAndWaitsForHierarchy(t *testing.T) {
	c := startOrg(t, replOrg3)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id, err := post(t, c.Nodes["s1"], "someone@example.net", "sales@repl.example", fmt.Sprint("before ", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitMessage(t, c.Nodes["s1"], sales1, ids[4], 20*time.Second)
	// s3 is cut off (bc down): it cannot compare its hierarchy with anyone.
	for _, n := range c.Nodes {
		if _, err := n.LinkState.SetUp("bc", false, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	cl := adminClient(t, c.Nodes["s1"])
	if err := cl.AddStore(ctx, admin.StoreRequest{Server: "s3", Name: "s3-new", Kind: "public", Hierarchy: "PF"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.AddReplica(ctx, admin.ReplicaRequest{Hierarchy: "PF", Folder: "/Sales", Store: "s3-new"}); err != nil {
		t.Fatal(err)
	}
	s3 := c.Nodes["s3"]
	decide := func() routing.Decision {
		return routing.Decide(s3.Directory.Snapshot(), s3.LinkState.Graph(), s3.Params(), routing.Input{At: "s3", Recipient: "sales@repl.example", Now: time.Now()})
	}
	eventually(t, 30*time.Second, "s3 learns of s3-new and its replica", func() (bool, string) {
		snap := s3.Directory.Snapshot()
		st := snap.Store("s3-new")
		return st != nil && len(snap.ReplicasIn("s3-new")) == 1, fmt.Sprint(st)
	})
	time.Sleep(time.Second) // the readiness check runs every 500 ms: give it a chance to be wrong
	d := decide()
	if d.Step1 == nil || d.Step1.Store == "s3-new" {
		t.Fatalf("step 1 chose s3-new before its hierarchy was replicated: %+v", d.Step1)
	}
	skipped := ""
	for _, sk := range d.Step1.Skipped {
		if sk.Store == "s3-new" {
			skipped = sk.Reason
		}
	}
	if skipped != hierarchy.ReasonPending {
		t.Fatalf("s3-new skipped for %q, want %q", skipped, hierarchy.ReasonPending)
	}
	// The link is back: s3 compares its hierarchy with s2's, publishes
	// store_ready, and every server lets step 1 choose s3-new.
	for _, n := range c.Nodes {
		if _, err := n.LinkState.SetUp("bc", true, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		n.Replication.Kick()
	}
	eventually(t, 30*time.Second, "step 1 at s3 chooses s3-new (R3)", func() (bool, string) {
		d := decide()
		return d.Step1 != nil && d.Step1.Store == "s3-new", fmt.Sprintf("%+v", d.Step1)
	})
	eventually(t, 30*time.Second, "s1 sees s3-new ready", func() (bool, string) {
		st := c.Nodes["s1"].Directory.Snapshot().Store("s3-new")
		return st != nil && !st.HierarchyPending, fmt.Sprint(st)
	})
	// Content backfill: s3-new holds what s1-pub holds.
	want, _ := replicaContents(c.Nodes["s1"], sales1)
	eventually(t, 30*time.Second, "s3-new backfills /Sales", func() (bool, string) {
		got, n := replicaContents(s3, store.MailboxRef{Store: "s3-new", Name: "/Sales"})
		return n == len(want) && maps.Equal(got, want), fmt.Sprintf("%d of %d", n, len(want))
	})
	// pfrouter admin replica status --folder /Sales, over the admin API of s2.
	eventually(t, 30*time.Second, "admin replica status shows three replicas in sync", func() (bool, string) {
		st, err := adminClient(t, c.Nodes["s2"]).ReplicaStatus(ctx, "", "/Sales")
		if err != nil || len(st.Replicas) != 3 || !st.InSync {
			return false, fmt.Sprintf("%+v %v", st, err)
		}
		for _, r := range st.Replicas {
			if r.Messages != 5 || r.Behind != 0 || !strings.Contains(r.CNSet, "s1-pub:") {
				return false, fmt.Sprintf("%+v", r)
			}
		}
		return true, ""
	})
	if list, err := adminClient(t, c.Nodes["s1"]).UnsyncedReplicas(ctx); err != nil || len(list) != 0 {
		t.Fatalf("server-wide status lists %d folders not in sync (%v), want none", len(list), err)
	}
}

// restartNode stops a server of c and starts it again on the same
// addresses; between the two, between(dataDir) may change its data.
func restartNode(t *testing.T, c *Cluster, o Options, name string, between func(dataDir string)) {
	t.Helper()
	old := c.Nodes[name]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := old.Close(ctx); err != nil {
		t.Logf("close %s: %v", name, err)
	}
	if between != nil {
		between(old.DataDir)
	}
	var n *Node
	deadline := time.Now().Add(20 * time.Second)
	for {
		ls, err := Bind(old.Org, []string{name})
		if err == nil {
			if n, err = Start(context.Background(), old.Org, name, ls[name], o); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Nodes[name] = n
}

// copyDir copies a directory tree (a server's data directory, closed).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Issue 12: a server whose data directory is restored from an older copy
// catches up by backfill: the posts made elsewhere since, its own posts
// lost with the newer data (s1 holds them), and an expunge made since.
func TestReplicationRestoredDataDirCatchesUp(t *testing.T) {
	org := parseOrg(t, replOrg)
	o := Options{BaseDir: t.TempDir(), Logger: testLogger()}
	c, err := StartAll(context.Background(), org, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	for i := range 2 {
		for _, s := range []string{"s1", "s2"} {
			if _, err := post(t, c.Nodes[s], "someone@example.net", "sales@repl.example", fmt.Sprintf("old %s %d", s, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitReplicas(t, c, 4)
	backup := t.TempDir()
	restartNode(t, c, o, "s2", func(dir string) { copyDir(t, dir, backup) })
	for i := range 2 {
		for _, s := range []string{"s1", "s2"} {
			if _, err := post(t, c.Nodes[s], "someone@example.net", "sales@repl.example", fmt.Sprintf("new %s %d", s, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitReplicas(t, c, 8)
	msgs, _ := c.Nodes["s1"].Store.Messages(context.Background(), sales1)
	if _, err := c.Nodes["s1"].Store.Expunge(context.Background(), sales1, []uint32{msgs[0].UID}); err != nil {
		t.Fatal(err)
	}
	want := waitReplicas(t, c, 7)
	// s2 loses everything since the backup.
	restartNode(t, c, o, "s2", func(dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, backup, dir)
		st, err := store.Open(filepath.Join(dir, "store"), testLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if msgs, _ := st.Messages(context.Background(), sales2); len(msgs) != 4 {
			t.Fatalf("restored s2-pub holds %d posts, want the backup's 4", len(msgs))
		}
	})
	got := waitReplicas(t, c, 7)
	if !maps.Equal(got, want) {
		t.Fatal("after catching up the replicas hold other messages than before the restore")
	}
}

// Issue 12 (hierarchy replication, content item 2): `pfrouter admin folder
// rename` on one server renames the folder in every server's directory
// (gossip) and every replica (content kept, mail to its address lands
// under the new name and replicates); `admin folder delete` removes it
// everywhere.
func TestReplicationFolderRenameAndDeleteByAdmin(t *testing.T) {
	c := startOrg(t, replOrg3)
	ctx := context.Background()
	for i := range 2 {
		if _, err := post(t, c.Nodes["s1"], "someone@example.net", "sales@repl.example", fmt.Sprint("before rename ", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicas(t, c, 2)
	rev1, rev2 := store.MailboxRef{Store: "s1-pub", Name: "/Revenue"}, store.MailboxRef{Store: "s2-pub", Name: "/Revenue"}
	if err := adminClient(t, c.Nodes["s2"]).RenameFolder(ctx, admin.FolderRequest{Hierarchy: "PF", Folder: "/Sales", To: "/Revenue"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "both replicas renamed, every directory too", func() (bool, string) {
		a, na := replicaContents(c.Nodes["s1"], rev1)
		b, nb := replicaContents(c.Nodes["s2"], rev2)
		old := c.Nodes["s1"].Store.MailboxExists(ctx, sales1) || c.Nodes["s2"].Store.MailboxExists(ctx, sales2)
		dir := c.Nodes["s3"].Directory.Snapshot().Folder("PF:/Revenue") != nil
		return na == 2 && nb == 2 && maps.Equal(a, b) && !old && dir, fmt.Sprintf("s1 %d s2 %d old names left %v s3 knows %v", na, nb, old, dir)
	})
	id, err := post(t, c.Nodes["s1"], "someone@example.net", "sales@repl.example", "after rename")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s2"], rev2, id, 30*time.Second)
	if err := adminClient(t, c.Nodes["s1"]).DeleteFolder(ctx, admin.FolderRequest{Hierarchy: "PF", Folder: "/Revenue"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "both replicas deleted", func() (bool, string) {
		e1, e2 := c.Nodes["s1"].Store.MailboxExists(ctx, rev1), c.Nodes["s2"].Store.MailboxExists(ctx, rev2)
		return !e1 && !e2, fmt.Sprintf("s1-pub %v s2-pub %v", e1, e2)
	})
	if _, err := c.Nodes["s2"].Directory.Snapshot().Resolve("sales@repl.example"); err == nil {
		t.Fatal("sales@ still resolves after its folder was deleted")
	}
}

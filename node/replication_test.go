package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/mail"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

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
	for _, m := range msgs {
		b, err := n.Store.Body(ctx, ref, m.UID)
		if err != nil {
			continue
		}
		id := ""
		if msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(b))); err == nil {
			id = msg.Header.Get("Message-Id")
		}
		out[id] = sha256.Sum256(b)
	}
	return out, len(msgs)
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
}

package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/store"
)

// Issue 12: SIGKILL the receiving server in the middle of a replication
// backfill; after a restart its replica holds every post of the source,
// byte for byte, each once (idempotent by change id).
func TestReplicationSIGKILLMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process crash test; runs without -short")
	}
	bin := pfrouterBinary(t)
	dir := t.TempDir()
	smtp1, smtp2, rep1, rep2, adm2 := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
organization: Crash
domains: [crash.example]
secret: crash-secret-0123456789abcdef0123456789
admin: {token: crash-admin-token-0123456789}
routing: {store_min_age: 0s, retry_initial: 100ms, retry_max: 500ms}
replication: {max_batch_bytes: 64KB}
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - {name: s1, site: one, routing_group: rg, listen: {smtp: "%s", replication: "%s"}, stores: [{name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: one, routing_group: rg, listen: {smtp: "%s", replication: "%s", admin: "%s"}, stores: [{name: s2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Big, hierarchy: PF, addresses: [big@crash.example], replicas: [s1-pub, s2-pub]}
`, smtp1, rep1, smtp2, rep2, adm2)
	cfgPath := filepath.Join(dir, "org.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	start := func(server string, addrs ...string) *exec.Cmd {
		return startServe(t, bin, server, []string{"--config", cfgPath, "--data-dir", data, "--server", server}, addrs...)
	}
	stop := func(cmd *exec.Cmd) { stopServe(t, cmd) }
	// s1 alone receives the posts (step 2 takes its local replica).
	p1 := start("s1", smtp1, rep1)
	const posts = 400
	for i := range posts {
		body := fmt.Sprintf("Subject: big %d\r\nMessage-Id: <big-%d@test>\r\n\r\n%s\r\n", i, i, strings.Repeat(strings.Repeat("x", 78)+"\r\n", 100))
		if err := sendRaw(smtp1, "sender@example.net", []string{"big@crash.example"}, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	cl := &admin.Client{BaseURL: "http://" + adm2, Token: "crash-admin-token-0123456789", By: "test"}
	held := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := cl.ReplicaStatus(ctx, "PF", "/Big")
		if err != nil {
			return -1
		}
		for _, r := range st.Replicas {
			if r.Store == "s2-pub" {
				return r.Messages
			}
		}
		return -1
	}
	// s1's queue must have delivered everything before s2 starts pulling.
	time.Sleep(time.Second)
	p2 := start("s2", smtp2, rep2, adm2)
	killedAt := -1
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n := held(); n > 0 {
			p2.Process.Signal(syscall.SIGKILL)
			p2.Wait()
			killedAt = n
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if killedAt < 0 {
		t.Fatal("s2 never started replicating /Big")
	}
	p2 = start("s2", smtp2, rep2, adm2)
	deadline = time.Now().Add(60 * time.Second)
	for held() != posts {
		if time.Now().After(deadline) {
			t.Fatalf("s2-pub holds %d of %d posts after the restart", held(), posts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop(p2)
	stop(p1)
	contents := func(server, st string) map[string][32]byte {
		s, err := store.Open(filepath.Join(data, server, "store"), testLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ref := store.MailboxRef{Store: st, Name: "/Big"}
		msgs, err := s.Messages(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][32]byte{}
		for _, m := range msgs {
			b, err := s.Body(context.Background(), ref, m.UID)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b, []byte("<big-"))
			j := bytes.IndexByte(b[i:], '>')
			id := string(b[i : i+j+1])
			if _, dup := out[id]; dup {
				t.Fatalf("%s holds %s twice", st, id)
			}
			out[id] = sha256.Sum256(b)
		}
		if len(out) != len(msgs) || len(out) != posts {
			t.Fatalf("%s holds %d messages, %d distinct, want %d", st, len(msgs), len(out), posts)
		}
		return out
	}
	a, b := contents("s1", "s1-pub"), contents("s2", "s2-pub")
	for id, d := range a {
		if b[id] != d {
			t.Fatalf("%s differs between the replicas", id)
		}
	}
	t.Logf("s2 killed holding %d of %d posts; converged after restart, none twice", killedAt, posts)
}

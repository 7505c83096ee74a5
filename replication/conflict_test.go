package replication

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"

	"pfrouter/directory"
	"pfrouter/store"
)

const renameConflict = `
organization: T
domains: [t.example]
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
  - name: a
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: b
    site: one
    routing_group: rg
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: b-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Alpha, hierarchy: PF, replicas: [a-pub, b-pub]}
  - {path: /Beta, hierarchy: PF, replicas: [a-pub, b-pub]}
`

// Issue 12 (concurrent renames onto one path): while partitioned, a
// renames /Alpha to /Target and b renames /Beta to /Target, each posting
// into both folders. When the partition heals and each hears of the
// other's rename (in the opposite order), both end with the same
// hierarchy (the newer rename, b's, holds /Target; /Alpha's folder sits at
// /Target~<digest>) and both replicas of each folder hold every post of
// that folder, none twice and none in the other folder.
func TestConcurrentRenamesOntoOnePathConvergeOverTheWire(t *testing.T) {
	var linkUp atomic.Bool
	srv := startServersWith(t, renameConflict, func(_ string, o *Options) {
		o.Reachable = func(string) bool { return linkUp.Load() }
	}, "a", "b")
	linkUp.Store(true)
	ctx := context.Background()
	alpha, beta := directory.FolderKey("PF", "/Alpha"), directory.FolderKey("PF", "/Beta")
	n := 0
	post := func(server, path string) {
		t.Helper()
		n++
		body := fmt.Appendf(nil, "Message-ID: <r%d@t>\r\nSubject: %s\r\n\r\nbody %d\r\n", n, path, n)
		if _, _, err := srv[server].st.Deliver(ctx, store.Delivery{Store: server + "-pub", Folder: path, ID: fmt.Sprint("r", n), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// subjects lists the Subject lines of a replica's posts.
	subjects := func(server, path string) map[string]int {
		ref := store.MailboxRef{Store: server + "-pub", Name: path}
		items, err := srv[server].st.ItemsOf(ctx, ref)
		if err != nil {
			return nil
		}
		out := map[string]int{}
		for uid := range items {
			b, err := srv[server].st.Body(ctx, ref, uid)
			if err != nil {
				return nil // renamed meanwhile: look again
			}
			s := string(b)
			i := strings.Index(s, "Subject: ")
			j := strings.Index(s, "\r\n\r\n")
			out[s[i+len("Subject: "):j]+"|"+s[j+4:]]++
		}
		return out
	}
	post("a", "/Alpha")
	post("b", "/Beta")
	waitFor(t, "both replicas of both folders to hold the first posts", func() bool {
		return len(subjects("a", "/Beta")) == 1 && len(subjects("b", "/Alpha")) == 1
	})

	linkUp.Store(false)
	ra := directory.Rev{Version: 10, Origin: "a"}
	rb := directory.Rev{Version: 10, Origin: "b"} // same version: origin b is the newer
	if err := srv["a"].dir.RenameFolders(map[string]string{alpha: "/Target"}, ra); err != nil {
		t.Fatal(err)
	}
	if err := srv["b"].dir.RenameFolders(map[string]string{beta: "/Target"}, rb); err != nil {
		t.Fatal(err)
	}
	for _, s := range srv {
		s.svc.Kick()
	}
	waitFor(t, "each side to rename its replica", func() bool {
		return len(subjects("a", "/Target")) == 1 && len(subjects("b", "/Target")) == 1
	})
	post("a", "/Target") // into Alpha's folder, on a
	post("a", "/Beta")
	post("b", "/Target") // into Beta's folder, on b
	post("b", "/Alpha")

	// Gossip after the partition: each hears the other's rename.
	if err := srv["a"].dir.RenameFolders(map[string]string{beta: "/Target"}, rb); err != nil {
		t.Fatal(err)
	}
	if err := srv["b"].dir.RenameFolders(map[string]string{alpha: "/Target"}, ra); err != nil {
		t.Fatal(err)
	}
	for _, s := range srv {
		s.svc.Kick()
	}
	linkUp.Store(true)

	sa, sb := srv["a"].dir.Snapshot(), srv["b"].dir.Snapshot()
	for _, s := range []*directory.Snapshot{sa, sb} {
		if f := s.Folder(directory.FolderKey("PF", "/Target")); f == nil || f.ID != beta {
			t.Fatalf("/Target is %+v, want Beta's folder (the newer rename)", f)
		}
	}
	lost := sa.FolderByID(alpha)
	if lost == nil || !strings.HasPrefix(lost.Path, "/Target~") || sb.FolderByID(alpha).Path != lost.Path {
		t.Fatalf("Alpha's folder: a %+v, b %+v; want one /Target~<digest> on both", lost, sb.FolderByID(alpha))
	}
	want := map[string]map[string]int{ // folder identity -> its posts
		alpha: {"/Alpha|body 1\r\n": 1, "/Target|body 3\r\n": 1, "/Alpha|body 6\r\n": 1},
		beta:  {"/Beta|body 2\r\n": 1, "/Beta|body 4\r\n": 1, "/Target|body 5\r\n": 1},
	}
	for _, server := range []string{"a", "b"} {
		waitFor(t, server+"'s replicas to hold every post of their folder", func() bool {
			return maps.Equal(subjects(server, "/Target"), want[beta]) && maps.Equal(subjects(server, lost.Path), want[alpha])
		})
	}
	for _, server := range []string{"a", "b"} {
		for _, id := range []string{alpha, beta} {
			f := srv[server].dir.Snapshot().FolderByID(id)
			tag, err := srv[server].st.MailboxFolder(ctx, store.MailboxRef{Store: server + "-pub", Name: f.Path})
			if err != nil || tag != id {
				t.Fatalf("%s: replica at %s is tagged %q (%v), want %s", server, f.Path, tag, err, id)
			}
		}
	}
}

package replication

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"pfrouter/store"
)

// Each end of a pull remembers what it read of folders in which nothing
// changed (memo.go), trusting the store's change versions. With the
// memory kept for an hour, every kind of change must still reach every
// replica at once: a post, a flag change, an expunge, each made on a
// different server, in folders among many quiet ones, and a change that
// arrives at a replica second-hand (c takes a's post from b as well).
// A change path that did not bump its version would never arrive here.
func TestMemoizedPullsMissNoChange(t *testing.T) {
	const folders = 40
	var y strings.Builder
	y.WriteString(`organization: T
domains: [t.example]
routing_groups: [{name: rg}]
sites: [{name: one}]
servers:
`)
	for _, n := range []string{"a", "b", "c"} {
		fmt.Fprintf(&y, "  - {name: %s, site: one, routing_group: rg, listen: {smtp: \"127.0.0.1:0\"}, stores: [{name: %s-pub, kind: public, hierarchy: PF, created: \"2020-01-01T00:00:00Z\"}]}\n", n, n)
	}
	y.WriteString("hierarchies: [{name: PF, tlh: mapi}]\nfolders:\n")
	for i := range folders {
		fmt.Fprintf(&y, "  - {path: /F%02d, hierarchy: PF, replicas: [a-pub, b-pub, c-pub]}\n", i)
	}
	srv := startServersWith(t, y.String(), func(_ string, o *Options) { o.MemoMaxAge = time.Hour }, "a", "b", "c")
	ctx := context.Background()
	ref := func(s, folder string) store.MailboxRef { return store.MailboxRef{Store: s + "-pub", Name: folder} }
	state := func(s, folder string) string {
		ms, err := srv[s].st.MessagesAs(ctx, ref(s, folder), "u")
		if err != nil {
			return err.Error()
		}
		out := fmt.Sprint(len(ms))
		for _, m := range ms {
			out += fmt.Sprint(" ", m.Flags)
		}
		return out
	}
	everywhere := func(what, folder, want string) {
		t.Helper()
		waitFor(t, what, func() bool {
			return state("a", folder) == want && state("b", folder) == want && state("c", folder) == want
		})
	}

	// Every folder gets a post, so every replica exists; then quiet
	// long polls, answered from the memo.
	for i := range folders {
		deliverPosts(t, srv["a"].st, "a-pub", fmt.Sprintf("/F%02d", i), fmt.Sprintf("p%d-", i), 1)
	}
	for i := range folders {
		everywhere("the first posts everywhere", fmt.Sprintf("/F%02d", i), "1 []")
	}
	time.Sleep(1500 * time.Millisecond)
	hits := int64(0)
	for _, s := range srv {
		hits += s.svc.memoHits.Load()
	}
	if hits == 0 {
		t.Fatal("no folder was answered from the memo: the test does not test it")
	}

	deliverPosts(t, srv["b"].st, "b-pub", "/F07", "late", 1)
	everywhere("a post on b to reach a and c", "/F07", "2 [] []")
	time.Sleep(time.Second) // the second-hand copies settle: every pair's long poll is quiet again

	ms, err := srv["c"].st.Messages(ctx, ref("c", "/F07"))
	if err != nil || len(ms) != 2 {
		t.Fatalf("c's /F07: %v, %d messages", err, len(ms))
	}
	if _, err := srv["c"].st.SetFlags(ctx, ref("c", "/F07"), "u", []uint32{ms[0].UID}, store.FlagsSet, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a flag change on c to reach a and b", func() bool {
		for _, s := range []string{"a", "b", "c"} {
			if !strings.Contains(state(s, "/F07"), `\Flagged`) {
				return false
			}
		}
		return true
	})

	time.Sleep(time.Second)
	am, err := srv["a"].st.Messages(ctx, ref("a", "/F31"))
	if err != nil || len(am) != 1 {
		t.Fatalf("a's /F31: %v, %d messages", err, len(am))
	}
	if _, err := srv["a"].st.Expunge(ctx, ref("a", "/F31"), []uint32{am[0].UID}); err != nil {
		t.Fatal(err)
	}
	everywhere("an expunge on a to reach b and c", "/F31", "0")
	for i := range folders {
		if i == 7 || i == 31 {
			continue
		}
		everywhere("the other folders unchanged", fmt.Sprintf("/F%02d", i), "1 []")
	}
}

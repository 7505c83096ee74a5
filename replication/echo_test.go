package replication

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"pfrouter/store"
)

// A replica's own posts never come back to it (issue 12, ingress with
// replication on): while a posts, c's pull of a and a's long poll at c
// are both pending; each post c applies wakes a's poll, which carries a's
// CN set of the moment it was sent. a must be answered with none of its
// own posts (they were committed at a before c could hold them), and c
// holds each post once.
func TestOwnPostsNeverSentBack(t *testing.T) {
	var mu sync.Mutex
	var back []store.ApplyResult // batches applied at a
	srv := startServersWith(t, twoServers, func(server string, o *Options) {
		if server == "a" {
			o.OnApplied = func(a Applied) {
				mu.Lock()
				back = append(back, a.Result)
				mu.Unlock()
			}
		}
	}, "a", "c")
	ctx := context.Background()
	ra, rc := store.MailboxRef{Store: "a-pub", Name: "/AC"}, store.MailboxRef{Store: "c-pub", Name: "/AC"}
	const posts = 30
	for i := range posts {
		body := fmt.Appendf(nil, "Message-ID: <e%d@t>\r\nSubject: p\r\n\r\nbody %d\r\n", i, i)
		if _, _, err := srv["a"].st.Deliver(ctx, store.Delivery{Store: "a-pub", Folder: "/AC", ID: fmt.Sprint(i), Class: "IPM.Post", Body: body}); err != nil {
			t.Fatal(err)
		}
		// Let c apply it (and a's poll at c wake) before the next.
		waitFor(t, fmt.Sprintf("c-pub to hold post %d", i), func() bool { return len(digests(t, srv["c"].st, rc)) == i+1 })
	}
	time.Sleep(300 * time.Millisecond) // an echo of the last post has time to arrive
	mu.Lock()
	defer mu.Unlock()
	for _, r := range back {
		if r.Added+r.Skipped > 0 {
			t.Fatalf("a was sent its own posts back: %d batch(es) applied at a, e.g. %+v", len(back), r)
		}
	}
	if n := len(digests(t, srv["a"].st, ra)); n != posts {
		t.Fatalf("a-pub holds %d posts, want %d", n, posts)
	}
	msgs, err := srv["c"].st.Messages(ctx, rc)
	if err != nil || len(msgs) != posts {
		t.Fatalf("c-pub holds %d messages (%v), want %d", len(msgs), err, posts)
	}
}

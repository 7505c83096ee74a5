package replication

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/store"
)

// The request pipelined behind an answer asks with what the replica will
// hold once the answer is applied: its CN set, the claim and every change
// of the batch; a refused folder keeps its set; the first request is left
// as it was (it is still needed to apply the answer).
func TestNextRequestAsksForWhatFollows(t *testing.T) {
	req := &pullRequest{MaxBytes: 100, Folders: []pullFolder{
		{Path: "/A", Source: "s", Have: store.CNSet{"s": {{Lo: 1, Hi: 5}}}},
		{Path: "/B", Source: "s", Have: store.CNSet{"s": {{Lo: 1, Hi: 2}}}},
	}}
	resp := &pullResponse{Folders: []folderBatch{
		{Changes: []store.Change{{ID: store.ChangeID{Origin: "s", N: 7}}, {ID: store.ChangeID{Origin: "t", N: 3}}},
			Claim: store.CNSet{"s": {{Lo: 1, Hi: 9}}}, More: true},
		{Error: "refused"},
	}}
	next := nextRequest(req, resp)
	if got, want := next.Folders[0].Have, (store.CNSet{"s": {{Lo: 1, Hi: 9}}, "t": {{Lo: 3, Hi: 3}}}); !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("next /A have %v, want %v", got.Summary(), want.Summary())
	}
	if got := next.Folders[1].Have; !slices.Equal(got["s"], store.Ranges{{Lo: 1, Hi: 2}}) {
		t.Fatalf("refused folder's have changed: %v", got.Summary())
	}
	if next.MaxBytes != 100 || next.WaitMS != 0 || next.Folders[0].Path != "/A" {
		t.Fatalf("next request %+v: want the same budget, no long poll", next)
	}
	if !slices.Equal(req.Folders[0].Have["s"], store.Ranges{{Lo: 1, Hi: 5}}) {
		t.Fatalf("first request's have changed: %v", req.Folders[0].Have.Summary())
	}
}

// A backfill in many batches (each pipelined behind the one being
// applied) stopped mid-way by closing the receiving service resumes on a
// new service over the same store and converges: every post once.
func TestPipelinedBackfillStoppedAndResumed(t *testing.T) {
	const posts = 300
	org, err := config.Parse([]byte(twoServers), "t.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t, "a", "c")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	org.ServerByName("a").Listen.Replication = l.Addr().String()
	start := func(name string, st *store.Store, onApplied func(Applied)) *Service {
		dir, err := directory.New(org, directory.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return New(Options{Server: name, Directory: dir, Store: st, Logger: quiet(), ServerTLS: pki.server(name),
			ClientTLS: pki.client(name), PeerServer: peerCN, MaxBatchBytes: 64 << 10, OnApplied: onApplied})
	}
	ctx := context.Background()
	sa, sc := openStore(t), openStore(t)
	ra, rc := store.MailboxRef{Store: "a-pub", Name: "/AC"}, store.MailboxRef{Store: "c-pub", Name: "/AC"}
	for i := range posts {
		body := fmt.Appendf(nil, "Message-ID: <%d@t>\r\n\r\n%s", i, bytes.Repeat([]byte("x"), 10<<10))
		if _, _, err := sa.Deliver(ctx, store.Delivery{Store: "a-pub", Folder: "/AC", ID: fmt.Sprint(i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	a := start("a", sa, nil)
	go a.Serve(l)
	t.Cleanup(func() { a.Close() })

	// The first service is closed while it applies its third batch: the
	// batch behind it was already asked for.
	var batches atomic.Int32
	stop, release := make(chan struct{}), make(chan struct{})
	c := start("c", sc, func(Applied) {
		if batches.Add(1) == 3 {
			close(stop)
			<-release
		}
	})
	c.Start()
	<-stop
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	waitFor(t, "the service to stop", func() bool { return c.ctx.Err() != nil })
	close(release)
	<-closed
	held, _ := sc.Messages(ctx, rc)
	if len(held) == 0 || len(held) >= posts {
		t.Fatalf("stopped replica holds %d of %d posts: want a part", len(held), posts)
	}

	c2 := start("c", sc, nil)
	c2.Start()
	t.Cleanup(func() { c2.Close() })
	waitFor(t, "the replica to hold every post", func() bool {
		ms, _ := sc.Messages(ctx, rc)
		return len(ms) >= posts
	})
	if ms, _ := sc.Messages(ctx, rc); len(ms) != posts {
		t.Fatalf("replica holds %d messages, want %d (a post twice?)", len(ms), posts)
	}
	if !maps.Equal(digests(t, sc, rc), digests(t, sa, ra)) {
		t.Fatal("replica differs from its source")
	}
	if n, err := sa.Missing(ctx, ra, mustCNSet(t, sc, rc)); err != nil || n != 0 {
		t.Fatalf("replica misses %d changes (%v)", n, err)
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mustCNSet(t *testing.T, st *store.Store, ref store.MailboxRef) store.CNSet {
	t.Helper()
	kn, err := st.CNSetOf(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return kn
}

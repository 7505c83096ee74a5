package store

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// The recent posts a replication source serves from (recent.go) change
// nothing of what ChangesSince answers: the same changes and bodies as
// read from badger after a restart (empty cache); a post deleted after it
// was kept is not sent; an entry whose change never committed is never
// sent; the caller's buffer changing after Deliver does not change what is
// sent; an entry is used only for the uid the view holds. Only posts of a
// folder some replica pulls are kept.
func TestRecentPostsServeOnlyCommitted(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ref := MailboxRef{Store: "A", Name: "/F"}
	var bufs [][]byte
	for i := range 6 {
		b := fmt.Appendf(nil, "Message-ID: <r%d@t>\r\nSubject: %d\r\n\r\n%s\r\n", i, i, bytes.Repeat([]byte{'a' + byte(i)}, 2000))
		if _, _, err := s.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: fmt.Sprint(i), Class: "IPM.Post", Body: b}); err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b)
		if i == 0 {
			if n, _ := s.recent.size(); n != 0 {
				t.Fatalf("%d posts kept of a folder nobody pulls", n)
			}
			if _, err := s.ChangesSince(ctx, ref, CNSet{}, 1<<30, 100); err != nil { // a replica pulls
				t.Fatal(err)
			}
		}
	}
	want := make([][]byte, len(bufs))
	for i, b := range bufs {
		want[i] = slices.Clone(b)
		for j := range b {
			b[j] = 'X' // the caller reuses its buffer
		}
	}
	if n, _ := s.recent.size(); n != 5 {
		t.Fatalf("%d recent posts kept, want the 5 made since the folder's first pull", n)
	}
	msgs, err := s.Messages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, ref, []uint32{msgs[1].UID}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.view(ref)
	if err != nil {
		t.Fatal(err)
	}
	// A change whose transaction failed: kept, never committed.
	ghost := Change{ID: ChangeID{Origin: "A", N: s.nextCN()}, Kind: ChangeAdd, Size: 5}
	ghost.Item = ghost.ID
	s.recent.put(rec.ID, ghost, msgs[0].UID, []byte("ghost"))

	got, err := s.ChangesSince(ctx, ref, CNSet{}, 1<<30, 100)
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, c := range got.Changes {
		if c.ID == ghost.ID {
			t.Fatal("a change that never committed was served from the recent posts")
		}
		if c.Kind == ChangeAdd {
			bodies = append(bodies, c.Body)
		}
	}
	wantBodies := slices.Concat(want[:1], want[2:]) // the second was deleted
	if !slices.EqualFunc(bodies, wantBodies, bytes.Equal) {
		t.Fatalf("served %d bodies, want the 5 posts still held, as delivered", len(bodies))
	}
	if got.Changes[len(got.Changes)-1].Kind != ChangeDelete {
		t.Fatalf("last change %+v, want the delete", got.Changes[len(got.Changes)-1])
	}

	// Only for the uid the view holds: an entry naming post 0's change
	// with another uid is not used; with its own uid it is (the entry is
	// what is served: this is the hit path).
	first := got.Changes[0]
	s.recent.put(rec.ID, first, msgs[0].UID+100, []byte("wrong uid"))
	b1, err := s.ChangesSince(ctx, ref, CNSet{}, 1<<30, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Changes[0].Body, want[0]) {
		t.Fatalf("served %q for a kept post under another uid", b1.Changes[0].Body)
	}
	s.recent.put(rec.ID, first, msgs[0].UID, []byte("kept"))
	if b1, err = s.ChangesSince(ctx, ref, CNSet{}, 1<<30, 1); err != nil {
		t.Fatal(err)
	}
	if string(b1.Changes[0].Body) != "kept" {
		t.Fatalf("served %q, want the kept entry (the recent posts are not read)", b1.Changes[0].Body)
	}
	s.recent.put(rec.ID, first, msgs[0].UID, want[0])

	// After a restart (nothing kept) the same answer, read from badger.
	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	if n, _ := s.recent.size(); n != 0 {
		t.Fatalf("%d recent posts after a restart", n)
	}
	again, err := s.ChangesSince(ctx, ref, CNSet{}, 1<<30, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != len(got.Changes) {
		t.Fatalf("%d changes after a restart, %d before", len(again.Changes), len(got.Changes))
	}
	for i := range got.Changes {
		a, b := again.Changes[i], got.Changes[i]
		if a.ID != b.ID || a.Kind != b.Kind || a.Size != b.Size || !a.At.Equal(b.At) || a.DeliveryID != b.DeliveryID || !bytes.Equal(a.Body, b.Body) {
			t.Fatalf("change %d differs: from badger %+v, from the recent posts %+v", i, a, b)
		}
	}
}

// The recent posts stay within their bounds in bytes and count, keep the
// newest, and a body too big for them is not kept.
func TestRecentPostsBounded(t *testing.T) {
	r := &recentPosts{maxBytes: 10_000, maxPosts: 5}
	r.serving(1)
	put := func(n uint64, size int) {
		r.put(1, Change{ID: ChangeID{Origin: "A", N: n}, Kind: ChangeAdd}, uint32(n), make([]byte, size))
	}
	for n := range uint64(1000) {
		put(n, 1000)
		if posts, b := r.size(); posts > 5 || b > 10_000 {
			t.Fatalf("after %d puts: %d posts, %d bytes kept", n+1, posts, b)
		}
		if len(r.order) > 2*5+1 {
			t.Fatalf("after %d puts the eviction order holds %d keys", n+1, len(r.order))
		}
	}
	for n := uint64(995); n < 1000; n++ {
		if _, ok := r.get(1, ChangeID{Origin: "A", N: n}); !ok {
			t.Fatalf("post %d, among the 5 newest, was evicted", n)
		}
	}
	if _, ok := r.get(1, ChangeID{Origin: "A", N: 994}); ok {
		t.Fatal("post 994 kept: more than 5 posts")
	}
	for n := uint64(2000); n < 2010; n++ {
		put(n, 2400)
	}
	if posts, b := r.size(); posts != 4 || b != 9600 {
		t.Fatalf("%d posts, %d bytes kept; want the 4 newest of 2,400 bytes within 10,000", posts, b)
	}
	put(3000, 2600) // above a quarter of the bound
	if _, ok := r.get(1, ChangeID{Origin: "A", N: 3000}); ok {
		t.Fatal("a body above a quarter of the bound was kept")
	}
}

// BenchmarkServeRecentPosts: the source's read of a pull that asks for the
// 16 posts (10 KB) just delivered, with and without the recent posts;
// ns/op is per post served.
func BenchmarkServeRecentPosts(b *testing.B) {
	for _, keep := range []bool{false, true} {
		b.Run(fmt.Sprintf("recent=%v", keep), func(b *testing.B) {
			s := openStore(b, b.TempDir())
			defer s.Close()
			if !keep {
				s.recent.maxPosts = -1
			}
			ref := MailboxRef{Store: "A", Name: "/F"}
			body := bytes.Repeat([]byte("x"), 10<<10)
			const batch = 16
			n := 0
			b.ResetTimer()
			for b.Loop() {
				if n%batch == 0 {
					b.StopTimer()
					have, err := s.CNSetOf(ctx, ref)
					if err != nil {
						b.Fatal(err)
					}
					for i := range batch {
						if _, _, err := s.Deliver(ctx, Delivery{Store: "A", Folder: "/F", ID: fmt.Sprint(n + i), Body: body}); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					got, err := s.ChangesSince(ctx, ref, have, 4<<20, 2000)
					if err != nil || len(got.Changes) != batch {
						b.Fatalf("%d changes, %v", len(got.Changes), err)
					}
				}
				n++
			}
		})
	}
}

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestPutScanDelete(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{q.NewID(), q.NewID(), q.NewID()}
	for i, id := range ids {
		if err := q.Put(context.Background(), id, []byte(fmt.Sprint("env", i)), []byte(fmt.Sprint("body", i))); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB: chunked
	bigID := q.NewID()
	if err := q.Put(context.Background(), bigID, []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	q.Close()
	// S2: everything Put returned for survives a reopen.
	q, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var seen []string
	q.Scan(func(id string, env []byte) error { seen = append(seen, id); return nil })
	if len(seen) != 4 || seen[0] != ids[0] {
		t.Fatalf("scan = %v", seen)
	}
	if b, err := q.Body(bigID); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big body: %d bytes, %v", len(b), err)
	}
	if b, _ := q.Body(ids[1]); string(b) != "body1" {
		t.Fatalf("body = %q", b)
	}
	if err := q.SetEnvelope(ids[1], []byte("env1b")); err != nil {
		t.Fatal(err)
	}
	if e, _ := q.Envelope(ids[1]); string(e) != "env1b" {
		t.Fatalf("envelope = %q", e)
	}
	if err := q.Delete(bigID); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Body(bigID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted body: %v", err)
	}
	if err := q.SetEnvelope("nope", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetEnvelope unknown: %v", err)
	}
}

// S2: chunks written without their envelope (a crash mid-Put) are invisible
// and swept at the next open.
func TestOrphanChunksSwept(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := q.NewID()
	q.db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(id, 0), []byte("half")) })
	q.Close()
	q, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n := 0
	q.Scan(func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d messages visible", n)
	}
	if _, err := q.Body(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("orphan chunk still there: %v", err)
	}
}

func TestConcurrentPut(t *testing.T) {
	q, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := q.Put(context.Background(), q.NewID(), []byte("e"), make([]byte, 10240)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	q.Scan(func(string, []byte) error { n++; return nil })
	if n != 320 {
		t.Fatalf("%d queued, want 320", n)
	}
}

func BenchmarkPut10K(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conns=%d", par), func(b *testing.B) {
			q, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			body := make([]byte, 10240)
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := q.Put(context.Background(), q.NewID(), []byte("env"), body); err != nil {
						b.Error(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

package bench

// Durable-queue commit benchmarks behind the "SMTP ingress" analysis in
// README.md: queue.Put as it is (one badger transaction per message), and
// two prototypes of the fixes proposed there, built on the same badger
// settings as internal/kv:
//
//   - GroupCommit: one committer goroutine writes every Put waiting at the
//     time in ONE transaction, so a batch costs one value-log sync and one
//     WAL sync. badger v4 only shares the value-log sync between concurrent
//     transactions; it syncs the WAL once per transaction (writeToLSM).
//   - InlineValues: ValueThreshold raised above the message size, so a
//     10 KB body is written to the WAL only and a commit costs one real
//     sync instead of two (the value-log sync then has nothing to flush).
//
//	go test ./bench/ -run '^$' -bench 'QueuePut' -benchtime 2000x

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"pfrouter/internal/kv"
	"pfrouter/queue"
)

var putConns = []int{1, 16, 64}

// putLoad calls put b.N times from conns goroutines and reports msgs/s.
func putLoad(b *testing.B, conns int, put func(i int) error) {
	b.Helper()
	b.SetBytes(ingressSize)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	b.ResetTimer()
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				if err := put(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

func benchBody() []byte {
	body := make([]byte, ingressSize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	return body
}

// BenchmarkQueuePut10KB: queue.Put as pfrouter's Accept calls it.
func BenchmarkQueuePut10KB(b *testing.B) {
	for _, conns := range putConns {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			q, err := queue.Open(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			body, env := benchBody(), make([]byte, 300)
			putLoad(b, conns, func(int) error { return q.Put(context.Background(), q.NewID(), env, body) })
		})
	}
}

// groupCommitter is the prototype of an application-level group commit
// for queue.Put: Puts queue up while a commit is being written and the
// next commit takes them all.
type groupCommitter struct {
	db  *badger.DB
	reg chan *putReq
}

type putReq struct {
	id        string
	env, body []byte
	done      chan error
}

func newGroupCommitter(db *badger.DB) *groupCommitter {
	g := &groupCommitter{db: db, reg: make(chan *putReq, 1024)}
	go g.loop()
	return g
}

func (g *groupCommitter) put(id string, env, body []byte) error {
	r := &putReq{id: id, env: env, body: body, done: make(chan error, 1)}
	g.reg <- r
	return <-r.done
}

func (g *groupCommitter) loop() {
	for r := range g.reg {
		batch, size := []*putReq{r}, len(r.body)
	more:
		for size < kv.MaxBatch {
			select {
			case r2, ok := <-g.reg:
				if !ok {
					break more
				}
				batch, size = append(batch, r2), size+len(r2.body)
			default:
				break more
			}
		}
		err := g.db.Update(func(txn *badger.Txn) error {
			for _, p := range batch {
				if err := txn.Set([]byte("b/"+p.id+"/0000"), p.body); err != nil {
					return err
				}
				if err := txn.Set([]byte("e/"+p.id), p.env); err != nil {
					return err
				}
			}
			return nil
		})
		for _, p := range batch {
			p.done <- err
		}
	}
}

// BenchmarkQueuePutGroupCommit10KB: the group-commit prototype on
// internal/kv's badger settings.
func BenchmarkQueuePutGroupCommit10KB(b *testing.B) {
	for _, conns := range putConns {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			db, err := kv.Open(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			g := newGroupCommitter(db)
			defer close(g.reg)
			body, env := benchBody(), make([]byte, 300)
			putLoad(b, conns, func(i int) error { return g.put(fmt.Sprintf("%016x", i), env, body) })
		})
	}
}

// BenchmarkQueuePutInlineValues10KB: one transaction per message as today,
// with internal/kv's settings except ValueThreshold = 1 MB (badger's
// maximum), so bodies stay in the WAL.
func BenchmarkQueuePutInlineValues10KB(b *testing.B) {
	for _, conns := range putConns {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			opts := badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil).
				WithMemTableSize(16 << 20).WithNumMemtables(3).WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20).
				WithValueLogFileSize(128 << 20).WithValueThreshold(1 << 20).WithNumCompactors(2).WithNumVersionsToKeep(1)
			db, err := badger.Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			body, env := benchBody(), make([]byte, 300)
			putLoad(b, conns, func(i int) error {
				id := fmt.Sprintf("%016x", i)
				return db.Update(func(txn *badger.Txn) error {
					if err := txn.Set([]byte("b/"+id+"/0000"), body); err != nil {
						return err
					}
					return txn.Set([]byte("e/"+id), env)
				})
			})
		})
	}
}

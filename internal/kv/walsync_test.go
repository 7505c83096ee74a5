package kv

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openInline(t *testing.T, dir string) (*DB, *[]string, *sync.Mutex) {
	t.Helper()
	db, err := OpenDB(dir, nil, Options{Inline: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.wal == nil {
		t.Fatal("no write-ahead log found: badger's layout changed, see walsync.go")
	}
	var mu sync.Mutex
	var synced []string
	db.wal.onSync = func(p string) {
		mu.Lock()
		synced = append(synced, filepath.Base(p))
		mu.Unlock()
	}
	return db, &synced, &mu
}

// Each commit of an Inline database is on disk when Update returns: the
// write-ahead log holding it was fdatasync'd after the commit, across
// memtable rotations (several memtables' worth is written). The check
// reads badger's files, so it also fails if badger stops putting commits
// in the .mem files walSync syncs.
func TestWALSyncCoversEveryCommit(t *testing.T) {
	t.Run("inotify", func(t *testing.T) { testCoversEveryCommit(t, true) })
	t.Run("listing", func(t *testing.T) { testCoversEveryCommit(t, false) })
}

func testCoversEveryCommit(t *testing.T, watch bool) {
	dir := t.TempDir()
	db, synced, mu := openInline(t, dir)
	defer db.Close()
	if !watch && db.wal.watch >= 0 {
		syscall.Close(db.wal.watch)
		db.wal.watch = -1 // as when inotify is unavailable: list on every sync
	}
	if watch && db.wal.watch < 0 {
		t.Skip("no inotify here")
	}
	val := make([]byte, 900<<10) // below MaxInline, as the store's chunks
	rotations, inLog := 0, 0
	last := ""
	for i := range 48 { // 48 x 900 KB: three 16 MB memtables at least
		rand.Read(val)
		marker := fmt.Appendf(nil, "commit-%04d-%x", i, val[:8])
		copy(val, marker)
		mu.Lock()
		before := len(*synced)
		mu.Unlock()
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(fmt.Appendf(nil, "k%d", i), val) }); err != nil {
			t.Fatal(err)
		}
		holder := memHolding(t, dir, marker)
		if holder == "" {
			continue // flushed to a table already (synced by badger)
		}
		inLog++
		mu.Lock()
		after := append([]string(nil), (*synced)[before:]...)
		mu.Unlock()
		found := false
		for _, p := range after {
			found = found || p == holder
		}
		if !found {
			t.Fatalf("commit %d is in %s, but the syncs after it were %v", i, holder, after)
		}
		if holder != last {
			rotations++
			last = holder
		}
	}
	if rotations < 3 || inLog < 40 {
		t.Fatalf("saw %d logs and %d commits in them; the test wants rotations", rotations, inLog)
	}
}

// memHolding names the .mem file of dir holding b, "" if none does.
func memHolding(t *testing.T, dir string, b []byte) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), memExt) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // flushed and deleted meanwhile
		}
		if bytes.Contains(data, b) {
			return e.Name()
		}
	}
	return ""
}

// One commit at a time takes exactly one fdatasync (issue 11: one sync
// per message at one session), and its value is not in the value log.
func TestInlineCommitIsOneSync(t *testing.T) {
	dir := t.TempDir()
	db, synced, mu := openInline(t, dir)
	defer db.Close()
	mu.Lock()
	*synced = (*synced)[:0]
	mu.Unlock()
	val := bytes.Repeat([]byte("body of a ten kilobyte message "), 330)
	for i := range 20 {
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(fmt.Appendf(nil, "m%d", i), val) }); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	n := len(*synced)
	mu.Unlock()
	if n != 20 {
		t.Fatalf("20 commits took %d syncs, want 20", n)
	}
	// Without a new log the directory is not listed (the inotify watch
	// says nothing was created).
	if db.wal.watch >= 0 && db.wal.lists > 1 {
		t.Fatalf("20 commits in one log listed the directory %d times", db.wal.lists)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".vlog") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, val[:64]) {
			t.Fatalf("a value went to the value log %s", e.Name())
		}
	}
}

// Concurrent commits share syncs, and each still returns after one that
// covers it.
func TestWALSyncGroupsConcurrentCommits(t *testing.T) {
	db, synced, mu := openInline(t, t.TempDir())
	defer db.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				if err := db.Update(func(txn *badger.Txn) error {
					return txn.Set(fmt.Appendf(nil, "g%d-%d", g, i), []byte("v"))
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	n := len(*synced)
	mu.Unlock()
	if n == 0 || n > 320 {
		t.Fatalf("320 commits took %d syncs", n)
	}
	t.Logf("320 concurrent commits, %d syncs", n)
}

// Reopening keeps what was committed (the logs left by the first run are
// replayed by badger and synced by the first sync).
func TestInlineReopen(t *testing.T) {
	dir := t.TempDir()
	db, _, _ := openInline(t, dir)
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("a"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, _, _ = openInline(t, dir)
	defer db.Close()
	err := db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("a"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

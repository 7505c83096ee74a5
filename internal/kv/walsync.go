package kv

// One sync per commit for a database whose values all stay in the LSM tree
// (Options.Inline). Badger with SyncWrites msyncs two files on every
// commit: its write-ahead log (the memtable's .mem file) and its current
// value-log file, even when the commit wrote nothing to the value log; each
// is a device flush. A database that never writes its value log only needs
// the first, so it is opened without SyncWrites and walSync makes its
// commits durable itself: fdatasync of the .mem files written since the
// last sync (the directory is listed when an inotify watch saw a file
// created, see syncLogs). Concurrent callers share one fdatasync (group
// commit), as badger's writer shares its syncs.
//
// What this relies on in badger (v4): a memtable's log is <dir>/<fid>.mem
// with fids counting up (five digits, zero padded); a new one is created
// (and its directory entry synced) before a write goes into it; an older
// one is deleted only after its contents are in a synced table. Open
// checks the first and falls back to syncing through badger (both files)
// if no .mem file is found, so a badger that changed its layout costs a
// sync, not durability; TestWALSyncCoversEveryCommit checks the rest.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
)

const memExt = ".mem"

type walSync struct {
	dir string
	db  *badger.DB

	requested atomic.Uint64 // sync requests made (tickets)

	mu     sync.Mutex // one sync at a time; guards the rest
	synced uint64     // every ticket up to this one is covered by a finished sync
	dirf   *os.File   // the directory, listed when a log may have been created
	// watch is an inotify descriptor watching the directory for created
	// files (-1: none, the directory is listed on every sync).
	watch int
	fid   int      // the newest .mem file known
	f     *os.File // open on fid; nil if it had already gone
	// onSync, in tests, is told each file synced.
	onSync func(path string)
	lists  int // directory listings (tests)
}

// newWALSync finds the memtable logs of db in dir; nil (sync through
// badger) if there are none, which a badger of this layout never has after
// Open.
func newWALSync(dir string, db *badger.DB) (*walSync, error) {
	// The watch goes first: a log created after it is seen by the next
	// sync, one created before it by the listing below.
	watch := newCreateWatch(dir)
	fids, err := memFids(dir)
	if err != nil || len(fids) == 0 {
		if watch >= 0 {
			syscall.Close(watch)
		}
		return nil, err
	}
	dirf, err := os.Open(dir)
	if err != nil {
		if watch >= 0 {
			syscall.Close(watch)
		}
		return nil, err
	}
	w := &walSync{dir: dir, db: db, dirf: dirf, watch: watch, fid: -1}
	// Logs left by the previous run were replayed into memtables but are
	// synced only now: cover them with the first sync.
	for _, fid := range fids[:len(fids)-1] {
		if err := w.syncFid(fid); err != nil {
			w.close()
			return nil, err
		}
	}
	if err := w.open(fids[len(fids)-1]); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// Sync returns once every commit that returned before Sync was called is
// on disk.
func (w *walSync) Sync() error {
	ticket := w.requested.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.synced >= ticket {
		return nil // a sync that started after our commit has finished
	}
	upTo := w.requested.Load()
	if err := w.syncLogs(); err != nil {
		return fmt.Errorf("sync write-ahead log in %s: %w", w.dir, err)
	}
	w.synced = upTo
	return nil
}

// syncLogs fdatasyncs the current log and, if badger moved on to newer
// ones since the last sync, the rest of the old one and every newer one.
// A rotation is seen from the directory: a log can be created, filled,
// flushed and deleted between two syncs while an older one is still kept
// open by a reader, so no probe of files (the next fid, our file's link
// count) sees every one. An inotify watch reports every file created since
// the last sync (badger creates a log before writing to it), and the
// directory is listed only then (or on every sync without a watch:
// listing 5,000 tables costs as much as the sync).
func (w *walSync) syncLogs() error {
	if w.f != nil && !w.created() {
		return w.datasync(w.f)
	}
	fids, err := w.list()
	if err != nil {
		return err
	}
	newer := slices.DeleteFunc(fids, func(fid int) bool { return fid <= w.fid })
	if len(newer) == 0 {
		if w.f == nil {
			// Our log is gone (its contents are in a synced table) and no
			// newer one is listed: let badger sync whatever it writes to.
			return w.db.Sync()
		}
		return w.datasync(w.f)
	}
	if w.f != nil {
		if err := w.datasync(w.f); err != nil {
			return err
		}
	}
	slices.Sort(newer)
	for _, fid := range newer[:len(newer)-1] {
		if err := w.syncFid(fid); err != nil {
			return err
		}
	}
	return w.open(newer[len(newer)-1])
}

// created reports whether a log may have been created since the last
// call: a .mem file was, the watch's queue overflowed, or there is no
// watch.
func (w *walSync) created() bool {
	if w.watch < 0 {
		return true
	}
	var buf [4096]byte
	found := false
	for {
		n, err := syscall.Read(w.watch, buf[:])
		if n <= 0 || err != nil {
			// EAGAIN: drained. Anything else: no longer trust the watch.
			if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
				syscall.Close(w.watch)
				w.watch = -1
				return true
			}
			return found
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 || strings.HasSuffix(strings.TrimRight(string(name), "\x00"), memExt) {
				found = true
			}
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// newCreateWatch returns an inotify descriptor reporting files created in
// dir, or -1 (the caller then lists the directory on every sync).
func newCreateWatch(dir string) int {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return -1
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		return -1
	}
	return fd
}

// list returns the fids of the memtable logs in the directory, unsorted.
func (w *walSync) list() ([]int, error) {
	w.lists++
	if _, err := w.dirf.Seek(0, 0); err != nil {
		return nil, err
	}
	names, err := w.dirf.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	return parseFids(names), nil
}

// open makes fid the current log, synced on each Sync; the previous one
// is closed (badger writes no more to it).
func (w *walSync) open(fid int) error {
	f, err := os.OpenFile(memPath(w.dir, fid), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f = nil // flushed already: nothing of it to sync
	} else if err != nil {
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.fid = f, fid
	if f != nil {
		return w.datasync(f)
	}
	return nil
}

// syncFid syncs a log badger no longer writes; one already flushed and
// deleted needs nothing.
func (w *walSync) syncFid(fid int) error {
	f, err := os.OpenFile(memPath(w.dir, fid), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return w.datasync(f)
}

func (w *walSync) datasync(f *os.File) error {
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	if w.onSync != nil {
		w.onSync(f.Name())
	}
	return nil
}

func (w *walSync) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.dirf.Close()
	if w.watch >= 0 {
		syscall.Close(w.watch)
		w.watch = -1
	}
}

func memPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%05d%s", fid, memExt))
}

// memFids lists the memtable logs in dir, oldest first.
func memFids(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	fids := parseFids(names)
	slices.Sort(fids)
	return fids, nil
}

func parseFids(names []string) []int {
	var fids []int
	for _, n := range names {
		name, ok := strings.CutSuffix(n, memExt)
		if !ok {
			continue
		}
		if fid, err := strconv.Atoi(name); err == nil {
			fids = append(fids, fid)
		}
	}
	return fids
}

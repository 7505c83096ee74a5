// Package tracking is each server's message tracking log (SPEC O4): the
// queue manager appends an event per step (received, routed, relayed,
// delivered, deferred, ndr, expired, queued), and a query by Message-ID,
// local queue id or origin queue id returns that server's events in time
// order. Collect asks every server's admin API (where Handler is mounted)
// and merges the answers, so `pfrouter trace <message-id>` shows the whole
// route across servers.
//
// Events live in a badger database of their own with a TTL (the configured
// retention). Appends go through a bounded buffer to one background writer
// that commits in batches: the mail path never waits on the disk, and a
// full buffer drops (and counts) events rather than stalling delivery.
// Neighbours: qmgr appends, the admin server mounts Handler, cmd uses
// Collect and WriteText; package telemetry carries the same steps as spans.
package tracking

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DefaultRetention is used when Open is given no positive retention.
const DefaultRetention = 7 * 24 * time.Hour

const (
	bufferSize = 8192 // events waiting for the writer
	maxBatch   = 512  // events per commit
	// appendWait is the most Append waits for room in a full buffer before
	// it drops the event: long enough to ride out a burst, short enough
	// that a stuck disk does not stall the mail path.
	appendWait   = 10 * time.Millisecond
	syncInterval = time.Second
	gcInterval   = 10 * time.Minute
	warnInterval = 10 * time.Second
)

// ErrClosed is returned by Query and Flush after Close.
var ErrClosed = errors.New("tracking log is closed")

// Option adjusts Open.
type Option func(*Log)

// WithServer names the server owning the log: Append fills it into events
// without a Server and Handler reports it.
func WithServer(name string) Option { return func(l *Log) { l.server = name } }

// WithClock replaces time.Now for events appended without a Time (tests).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// Log is one server's tracking log.
type Log struct {
	db        *badger.DB
	dir       string
	retention time.Duration
	server    string
	now       func() time.Time
	logger    *slog.Logger

	ch   chan item
	quit chan struct{} // closed by Close: the writer drains and stops
	done chan struct{} // closed by the writer when it has stopped

	closeOnce sync.Once
	closed    atomic.Bool
	dbMu      sync.RWMutex // Query holds it shared; Close exclusively before closing db

	seq      uint64 // writer goroutine only
	dropped  atomic.Uint64
	lastWarn atomic.Int64
}

// item is an event or, with ack set, a flush marker.
type item struct {
	ev  Event
	ack chan struct{}
}

// Open opens (creating if needed) the tracking log in dir. Events expire
// retention after they are written (a badger TTL).
func Open(dir string, retention time.Duration, logger *slog.Logger, opts ...Option) (*Log, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if retention <= 0 {
		retention = DefaultRetention
	}
	l := &Log{
		dir: dir, retention: retention, now: time.Now, logger: logger.With("component", "tracking"),
		ch: make(chan item, bufferSize), quit: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	// No fsync per commit: a commit reaches the OS before the writer moves
	// on, so a crash of the process loses nothing committed; the writer
	// syncs every second for machine crashes. Memory is kept small because
	// several servers may share one process.
	bopts := badger.DefaultOptions(dir).
		WithSyncWrites(false).
		WithLogger(slogAdapter{l.logger.With("db", dir)}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false)
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("open tracking log %s: %w", dir, err)
	}
	l.db = db
	// Sequence numbers only break ties between events with the same time;
	// starting from the clock keeps them distinct across restarts.
	l.seq = uint64(time.Now().UnixNano())
	go l.run()
	return l, nil
}

// Append records an event. It does not wait for the disk: the event is
// buffered for the writer. If the buffer stays full for a few milliseconds
// the event is dropped, counted (Dropped) and a warning logged. A zero Time
// is now; an empty Server is the log's.
func (l *Log) Append(e Event) {
	if l.closed.Load() {
		l.drop("log closed")
		return
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if e.Server == "" {
		e.Server = l.server
	}
	it := item{ev: e}
	select {
	case l.ch <- it:
		return
	default:
	}
	t := time.NewTimer(appendWait)
	defer t.Stop()
	select {
	case l.ch <- it:
	case <-t.C:
		l.drop("buffer full")
	case <-l.quit:
		l.drop("log closed")
	}
}

// Dropped is the number of events Append could not record.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// drop counts a lost event and warns at most every warnInterval.
func (l *Log) drop(why string) {
	n := l.dropped.Add(1)
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(warnInterval) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.logger.Warn("tracking events dropped", "reason", why, "dropped_total", n, "dir", l.dir)
}

// Flush waits until every event appended before it is committed.
func (l *Log) Flush(ctx context.Context) error {
	if l.closed.Load() {
		return ErrClosed
	}
	ack := make(chan struct{})
	select {
	case l.ch <- item{ack: ack}:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("flush tracking log: %w", ctx.Err())
	}
	select {
	case <-ack:
		return nil
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("flush tracking log: %w", ctx.Err())
	}
}

// Close writes the buffered events and closes the database. Events
// appended concurrently with Close may be dropped.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
		<-l.done
		l.dbMu.Lock()
		defer l.dbMu.Unlock()
		if serr := l.db.Sync(); serr != nil {
			err = fmt.Errorf("sync tracking log %s: %w", l.dir, serr)
		}
		if cerr := l.db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close tracking log %s: %w", l.dir, cerr))
		}
	})
	return err
}

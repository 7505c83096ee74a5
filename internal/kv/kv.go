// Package kv opens badger databases the way every pfrouter store wants them:
// every commit fsync'd before it returns (concurrent commits share one
// sync), memory sized for several servers in one process, and badger's
// logging routed to slog. An Inline database (the message store) keeps
// every value in the LSM tree and is synced by kv, one fdatasync per commit
// (walsync.go); the others let badger sync (SyncWrites). Neighbours: store
// and queue open their databases here; see docs/architecture.md, "Storage".
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// Options tune one database beyond the shared defaults. The zero value
// is Open's settings.
type Options struct {
	// ValueThreshold: values of at least this many bytes go to badger's
	// value log, smaller ones stay in the LSM tree (and its write-ahead
	// log). 0 means 4 KB. A database of short-lived values (the queue)
	// sets it above its values' size: a commit then writes one log
	// instead of two, and deleted values vanish in compaction instead of
	// lingering in value-log files.
	ValueThreshold int64
	// Inline: every value the database is given is below MaxInline, so
	// nothing goes to badger's value log, and kv rather than badger makes
	// commits durable: one fdatasync of the write-ahead log per commit (or
	// per group of concurrent commits) instead of badger's two msyncs (its
	// log and its value log, written or not). Use OpenDB and its Update.
	Inline bool
}

// MaxInline bounds the values of an Inline database: badger keeps values
// below its largest ValueThreshold (1 MB) in the LSM tree.
const MaxInline = 1 << 20

// DB is a badger database whose Update returns once the commit is on disk.
// View, NewTransaction, GetSequence... are badger's. A write that does not
// go through Update (a WriteBatch, a read-write transaction committed by
// hand) must call Sync before it counts as durable; until then a crash of
// the machine (not of the process) can lose it. Writes become visible to
// readers when badger commits them, which for an Inline database is just
// before Update's sync.
type DB struct {
	*badger.DB
	wal *walSync // nil: badger syncs every commit itself
}

// OpenDB is OpenWith returning a DB.
func OpenDB(dir string, logger *slog.Logger, o Options) (*DB, error) {
	db, err := OpenWith(dir, logger, o)
	if err != nil {
		return nil, err
	}
	d := &DB{DB: db}
	if o.Inline {
		if d.wal, err = newWALSync(dir, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("open database %s: %w", dir, err)
		}
		if d.wal == nil {
			logger.Warn("no badger write-ahead log found; every commit syncs through badger", "db", dir)
		}
	}
	return d, nil
}

// Update runs fn in a read-write transaction, commits it, and returns once
// the commit is on disk.
func (d *DB) Update(fn func(txn *badger.Txn) error) error {
	if err := d.DB.Update(fn); err != nil {
		return err
	}
	return d.Sync()
}

// Sync returns once every commit that returned before it is on disk.
func (d *DB) Sync() error {
	switch {
	case d.wal != nil:
		return d.wal.Sync()
	case d.DB.Opts().SyncWrites:
		return nil
	default:
		return d.DB.Sync()
	}
}

// Close syncs and closes the database.
func (d *DB) Close() error {
	err := d.Sync()
	if d.wal != nil {
		d.wal.close()
	}
	return errors.Join(err, d.DB.Close())
}

// Open opens (creating if needed) a durable badger database in dir.
func Open(dir string, logger *slog.Logger) (*badger.DB, error) {
	return OpenWith(dir, logger, Options{})
}

// OpenWith is Open with per-database options.
func OpenWith(dir string, logger *slog.Logger, o Options) (*badger.DB, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = 4 << 10
	}
	if o.Inline {
		o.ValueThreshold = MaxInline
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(!o.Inline).
		WithLogger(slogAdapter{logger.With("db", dir)}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(128 << 20).
		WithValueThreshold(o.ValueThreshold).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(true)
	// Tables of BaseTableSize (2 MB) at every level: badger's default
	// doubles them per level, and a compaction's table builders (up to a
	// dozen at once) allocate twice a table's size, so the heap grew with
	// the database (issue 12, backfill memory).
	opts.TableSizeMultiplier = 1
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", dir, err)
	}
	return db, nil
}

// MaxBatch is the largest amount of value data pfrouter writes in one
// transaction; larger messages are written in chunks.
const MaxBatch = 1 << 20

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Errorf(f string, v ...any)   { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warningf(f string, v ...any) { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Infof(f string, v ...any)    { a.debug(f, v) }
func (a slogAdapter) Debugf(f string, v ...any)   { a.debug(f, v) }

// debug formats only when debug logging is on: badger logs at debug level
// on every write batch.
func (a slogAdapter) debug(f string, v []any) {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		a.l.Debug(fmt.Sprintf(f, v...))
	}
}

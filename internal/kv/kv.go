// Package kv opens badger databases the way every pfrouter store wants them:
// every commit fsync'd before it returns (badger groups concurrent commits
// into one fsync), memory sized for several servers in one process, and
// badger's logging routed to slog.
package kv

import (
	"context"
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
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
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

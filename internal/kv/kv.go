// Package kv opens badger databases the way every pfrouter store wants them:
// every commit fsync'd before it returns (badger groups concurrent commits
// into one fsync), memory sized for several servers in one process, and
// badger's logging routed to slog.
package kv

import (
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// Open opens (creating if needed) a durable badger database in dir.
func Open(dir string, logger *slog.Logger) (*badger.DB, error) {
	if logger == nil {
		logger = slog.Default()
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(slogAdapter{logger.With("db", dir)}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(128 << 20).
		WithValueThreshold(4 << 10).
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
func (a slogAdapter) Infof(f string, v ...any)    { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)   { a.l.Debug(fmt.Sprintf(f, v...)) }

package tracking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// maxQueryEvents caps one answer: a Message-ID reused by a mail loop or a
// list must not make a query exhaust memory.
const maxQueryEvents = 10000

// ErrNoID is returned for an empty (or unusable) id.
var ErrNoID = errors.New("tracking query needs a Message-ID or queue id")

// Query returns this server's events for id — a Message-ID with or
// without angle brackets, a local queue id or an origin queue id — oldest
// first. Events appended before the call are included.
func (l *Log) Query(ctx context.Context, id string) ([]Event, error) {
	key := normID(id)
	if key == "" {
		return nil, ErrNoID
	}
	if err := l.Flush(ctx); err != nil {
		return nil, err
	}
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	if l.closed.Load() {
		return nil, ErrClosed
	}
	events := []Event{}
	prefix := indexPrefix(key)
	err := l.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != len(prefix)+suffixLen {
				continue // another id that merely starts with this one
			}
			item, err := txn.Get(eventKey(k[len(prefix):]))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired between index and event
			}
			if err != nil {
				return err
			}
			var e Event
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			events = append(events, e)
			if len(events) >= maxQueryEvents {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query tracking log %s for %q: %w", l.dir, id, err)
	}
	return events, nil
}

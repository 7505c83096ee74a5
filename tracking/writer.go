package tracking

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// run is the single writer: it takes whatever is buffered (up to maxBatch)
// and commits it in one batch, so a burst costs one commit, not one per
// event. On quit it drains the buffer before stopping.
func (l *Log) run() {
	defer close(l.done)
	syncT := time.NewTicker(syncInterval)
	defer syncT.Stop()
	gcT := time.NewTicker(gcInterval)
	defer gcT.Stop()
	batch := make([]item, 0, maxBatch)
	dirty := false
	for {
		select {
		case it := <-l.ch:
			batch = l.fill(append(batch[:0], it))
			l.write(batch)
			dirty = true
		case <-syncT.C:
			if dirty {
				if err := l.db.Sync(); err != nil {
					l.logger.Error("sync tracking log", "dir", l.dir, "err", err)
				}
				dirty = false
			}
		case <-gcT.C:
			// Expired events are dropped by compaction; this reclaims
			// value-log space of any large ones.
			if err := l.db.RunValueLogGC(0.5); err != nil && !errors.Is(err, badger.ErrNoRewrite) {
				l.logger.Debug("tracking value log gc", "err", err)
			}
		case <-l.quit:
			for {
				batch = l.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				l.write(batch)
			}
		}
	}
}

// fill adds buffered items without waiting.
func (l *Log) fill(batch []item) []item {
	for len(batch) < maxBatch {
		select {
		case it := <-l.ch:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// write commits the events of a batch, then releases its flush markers.
func (l *Log) write(batch []item) {
	wb := l.db.NewWriteBatch()
	n := 0
	var err error
	for i := range batch {
		if batch[i].ack != nil {
			continue
		}
		if err = l.set(wb, &batch[i].ev); err != nil {
			break
		}
		n++
	}
	if err == nil {
		err = wb.Flush()
	} else {
		wb.Cancel()
	}
	if err != nil {
		l.dropped.Add(uint64(n))
		l.logger.Error("tracking events lost: write failed", "events", n, "dir", l.dir, "err", err)
	}
	for _, it := range batch {
		if it.ack != nil {
			close(it.ack)
		}
	}
}

func (l *Log) set(wb *badger.WriteBatch, e *Event) error {
	// Retention counts from when the event is written, not from its
	// Time: an event stamped by a fake or skewed clock is still kept.
	exp := time.Now().Add(l.retention).Unix()
	val, err := json.Marshal(e)
	if err != nil {
		return err
	}
	l.seq++
	suffix := eventSuffix(e.Time, l.seq)
	if err := wb.SetEntry(&badger.Entry{Key: eventKey(suffix[:]), Value: val, ExpiresAt: uint64(exp)}); err != nil {
		return err
	}
	for _, id := range e.ids() {
		if err := wb.SetEntry(&badger.Entry{Key: indexKey(id, suffix[:]), ExpiresAt: uint64(exp)}); err != nil {
			return err
		}
	}
	return nil
}

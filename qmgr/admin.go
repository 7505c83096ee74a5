package qmgr

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"pfrouter/envelope"
)

// This file is the operator's view of the queue (the admin API's queue
// list/show/retry/delete/flush). It reads and changes the scheduler's
// entries under m.mu; an entry a worker is processing right now belongs to
// that worker, so only its immutable fields are shown.

// ErrNotQueued is returned for a queue id the manager does not hold.
var ErrNotQueued = errors.New("no such message in the queue")

// Item is one queued message as an operator sees it.
type Item struct {
	ID         string
	MessageID  string
	From       string
	Arrived    time.Time
	Size       int64
	InFlight   bool // a delivery attempt is running now
	Recipients []ItemRecipient
}

// ItemRecipient is one recipient's delivery state.
type ItemRecipient struct {
	Addr string
	// State is pending, waiting (no route now: rerouted when link state
	// changes), deferred (retried at NextAttempt), delivered, failed or
	// in-flight.
	State       string
	NextAttempt time.Time
	Reason      string
	// NextHop is the server the recipient was last routed towards ("" for
	// local delivery or before routing).
	NextHop string
}

// List returns every queued message, by queue id. Messages waiting on
// disk (sched.go) are read from the queue, outside the lock.
func (m *Manager) List() []Item {
	type onDisk struct {
		id      string
		running bool
	}
	var disk []onDisk
	m.mu.Lock()
	out := make([]Item, 0, len(m.msgs))
	for _, e := range m.msgs {
		if e.env != nil {
			out = append(out, itemOf(e.id, e.env, e.running))
		} else {
			disk = append(disk, onDisk{e.id, e.running})
		}
	}
	m.mu.Unlock()
	for _, d := range disk {
		if env, err := m.queued(d.id); err == nil {
			out = append(out, itemOf(d.id, env, d.running))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Show returns one queued message.
func (m *Manager) Show(id string) (Item, error) {
	m.mu.Lock()
	e, ok := m.msgs[id]
	if ok && e.env != nil {
		defer m.mu.Unlock()
		return itemOf(id, e.env, e.running), nil
	}
	m.mu.Unlock()
	if ok {
		env, err := m.queued(id)
		if err == nil {
			return itemOf(id, env, e.running), nil
		}
	}
	return Item{}, fmt.Errorf("queue id %q: %w", id, ErrNotQueued)
}

// queued reads a message's envelope from the queue.
func (m *Manager) queued(id string) (*envelope.Envelope, error) {
	raw, err := m.o.Queue.Envelope(id)
	if err != nil {
		return nil, err
	}
	return envelope.Unmarshal(raw)
}

// itemOf copies an envelope; an entry's is read with m.mu held. ID,
// MessageID, From, Arrived, Size and the recipients' addresses never
// change after Accept, so they are safe to read even while a worker runs
// the entry.
func itemOf(id string, env *envelope.Envelope, running bool) Item {
	it := Item{ID: id, MessageID: env.MessageID, From: env.From, Arrived: env.Arrived, Size: env.Size, InFlight: running}
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if running {
			it.Recipients = append(it.Recipients, ItemRecipient{Addr: r.Addr, State: "in-flight"})
			continue
		}
		ir := ItemRecipient{Addr: r.Addr, State: r.State, Reason: r.Reason, NextHop: r.NextHop}
		if r.State == envelope.Pending {
			switch {
			case r.Waiting:
				ir.State, ir.NextAttempt = "waiting", r.NextAttempt
			case r.Attempts > 0:
				ir.State, ir.NextAttempt = "deferred", r.NextAttempt
			}
		}
		it.Recipients = append(it.Recipients, ir)
	}
	return it
}

// Retry makes one message due now, its deferred recipients included; a
// message being attempted right now is attempted again as soon as that
// attempt ends.
func (m *Manager) Retry(id string) error {
	m.mu.Lock()
	e, ok := m.msgs[id]
	if ok {
		m.retryLocked(e)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("queue id %q: %w", id, ErrNotQueued)
	}
	m.poke()
	return nil
}

// Flush makes every queued message due now.
func (m *Manager) Flush() {
	m.mu.Lock()
	for _, e := range m.msgs {
		m.retryLocked(e)
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) retryLocked(e *entry) {
	if e.running {
		e.again, e.forceLater = true, true
		return
	}
	e.force = true
	if e.hidx >= 0 {
		m.s.schedule(e, m.o.Now())
	}
}

// Delete removes a message from the queue without a non-delivery report.
// A message being attempted is deleted once that attempt ends (it waits
// for it, until ctx ends); recipients that attempt delivered stay
// delivered.
func (m *Manager) Delete(ctx context.Context, id string) error {
	for {
		m.mu.Lock()
		e, ok := m.msgs[id]
		if !ok {
			m.mu.Unlock()
			return fmt.Errorf("queue id %q: %w", id, ErrNotQueued)
		}
		if !e.running {
			env := e.env
			m.dropBodyLocked(e)
			m.s.remove(e)
			delete(m.msgs, id)
			m.mu.Unlock()
			if env == nil {
				env, _ = m.queued(id) // for the log and the event only
			}
			if err := m.o.Queue.Delete(id); err != nil {
				return fmt.Errorf("delete %s: %w", id, err)
			}
			ev := Event{Kind: "deleted", QueueID: id, Details: map[string]string{"reason": "deleted by an operator"}}
			if env != nil {
				ev.OriginID, ev.MessageID = env.OriginID, env.MessageID
			}
			m.log.Info("message deleted from the queue by an operator", "queue_id", id, "message_id", ev.MessageID)
			m.event(ev)
			return nil
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete %s: a delivery attempt is still running: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

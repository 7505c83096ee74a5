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

// List returns every queued message, by queue id.
func (m *Manager) List() []Item {
	m.mu.Lock()
	out := make([]Item, 0, len(m.msgs))
	for _, e := range m.msgs {
		out = append(out, itemOf(e))
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Show returns one queued message.
func (m *Manager) Show(id string) (Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.msgs[id]
	if !ok {
		return Item{}, fmt.Errorf("queue id %q: %w", id, ErrNotQueued)
	}
	return itemOf(e), nil
}

// itemOf copies an entry. Called with m.mu held. ID, MessageID, From,
// Arrived, Size and the recipients' addresses never change after Accept,
// so they are safe to read even while a worker runs the entry.
func itemOf(e *entry) Item {
	env := e.env
	it := Item{ID: e.id, MessageID: env.MessageID, From: env.From, Arrived: env.Arrived, Size: env.Size, InFlight: e.running}
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if e.running {
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
		e.again = true
		return
	}
	now := m.o.Now()
	for i := range e.env.Recipients {
		if r := &e.env.Recipients[i]; r.State == envelope.Pending {
			r.NextAttempt = time.Time{}
		}
	}
	e.due = now
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
			e.deleted = true
			m.dropBodyLocked(e)
			delete(m.msgs, id)
			m.mu.Unlock()
			if err := m.o.Queue.Delete(id); err != nil {
				return fmt.Errorf("delete %s: %w", id, err)
			}
			m.log.Info("message deleted from the queue by an operator", "queue_id", id, "message_id", e.env.MessageID)
			m.event(Event{Kind: "deleted", QueueID: id, OriginID: e.env.OriginID, MessageID: e.env.MessageID,
				Details: map[string]string{"reason": "deleted by an operator"}})
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

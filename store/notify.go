package store

import "sync"

// EventKind says what changed in a mailbox.
type EventKind int

const (
	EventExists  EventKind = iota // a message was added (UID set)
	EventExpunge                  // a message was removed (UID set)
	EventFlags                    // flags changed (Viewer set for private flags of a public folder)
	EventDeleted                  // the mailbox was deleted or renamed away
)

// Event is a change notice. Events are wake-ups: a subscriber that falls
// behind may miss some (the channel is buffered and never blocks the
// writer), but a pending event always follows the last change, so a
// subscriber that re-reads the mailbox on every event misses nothing.
type Event struct {
	Kind   EventKind
	UID    uint32
	Viewer string
}

type notifier struct {
	mu     sync.Mutex
	subs   map[uint64]map[*subscription]struct{}
	closed bool
}

type subscription struct{ ch chan Event }

func (n *notifier) init() { n.subs = map[uint64]map[*subscription]struct{}{} }

func (n *notifier) publish(mbox uint64, ev Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs[mbox] {
		select {
		case sub.ch <- ev:
		default: // full: the subscriber has wake-ups pending already
		}
	}
}

func (n *notifier) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for _, set := range n.subs {
		for sub := range set {
			close(sub.ch)
		}
	}
	n.subs = map[uint64]map[*subscription]struct{}{}
}

// Subscribe returns a channel of changes to a mailbox made through this
// Store (deliveries, appends, copies, expunges, flag changes), and a cancel
// func that must be called when done. It follows the mailbox by identity: a
// rename away or a delete sends EventDeleted. The channel is closed on
// cancel or Close.
func (s *Store) Subscribe(ref MailboxRef) (<-chan Event, func(), error) {
	rec, err := s.view(ref.normalize())
	if err != nil {
		return nil, nil, err
	}
	sub := &subscription{ch: make(chan Event, 64)}
	n := &s.notify
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if n.subs[rec.ID] == nil {
		n.subs[rec.ID] = map[*subscription]struct{}{}
	}
	n.subs[rec.ID][sub] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if set, ok := n.subs[rec.ID]; ok {
				if _, ok := set[sub]; ok {
					delete(set, sub)
					close(sub.ch)
				}
				if len(set) == 0 {
					delete(n.subs, rec.ID)
				}
			}
		})
	}
	return sub.ch, cancel, nil
}

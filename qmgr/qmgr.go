// Package qmgr is a server's queue manager (Postfix's qmgr): it takes each
// message smtpd accepted, makes it durable in the queue before 250 is
// answered (S2), and then, per recipient, asks the routing package where it
// goes next, delivers it into the local store or relays it to the next hop,
// retries with backoff, reroutes when link state changes, counts failed hops
// and marks them down (R13b), and ends undeliverable recipients with a
// non-delivery report (S6, S7). Decide (routing), queue (queue), deliver
// (store) and relay (relay) stay separate packages; this one schedules.
package qmgr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/relay"
	"pfrouter/routing"
	"pfrouter/smtpd"
	"pfrouter/store"
)

// Queue is the durable queue (package queue).
type Queue interface {
	NewID() string
	Put(ctx context.Context, id string, env, body []byte) error
	PutAndDelete(ctx context.Context, id string, env, body []byte, deleteID string) error
	SetEnvelope(id string, env []byte) error
	Body(id string) ([]byte, error)
	Delete(id string) error
	// DeleteLater removes a finished message without waiting for the
	// disk; a crash may bring it back, to be delivered again.
	DeleteLater(id string)
	Scan(fn func(id string, env []byte) error) error
}

// Deliverer puts a message into a local store (package store).
type Deliverer interface {
	Deliver(ctx context.Context, d store.Delivery) (uid uint32, dup bool, err error)
}

// Relayer hands a message to a peer (package relay).
type Relayer interface {
	Send(ctx context.Context, addr, from string, rcpts []string, body []byte) ([]relay.RcptResult, error)
	Probe(ctx context.Context, addr string) error
}

// Event is one step of a message's life, for the tracking log and metrics.
type Event struct {
	Kind      string // received, routed, relayed, delivered, deferred, ndr, expired
	QueueID   string
	OriginID  string
	MessageID string
	Recipient string
	Details   map[string]string
}

// Options configure a Manager.
type Options struct {
	Server    string
	Org       *config.Org
	Queue     Queue
	Store     Deliverer
	Directory *directory.Directory
	LinkState *linkstate.Table
	Relay     Relayer
	// Outbound hands mail to outbound connectors' smarthosts; nil means
	// this server cannot (recipients routed to a connector here retry).
	Outbound Outbound
	// SetOutboundHealth publishes this server's verdict on an outbound
	// connector's smarthost (the connector's hop-health cause) to every
	// server (changes.SetOutboundHealth). Nil sets the cause in LinkState
	// only.
	SetOutboundHealth func(connector string, down bool, reason string) error
	// Params returns the routing tunables in force (store_min_age is
	// runtime-tunable, O1). Nil means the config's.
	Params  func() routing.Params
	Logger  *slog.Logger
	Now     func() time.Time
	Workers int
	OnEvent func(Event)
	// Trace, when set, wraps each routing decision and attempt (telemetry).
	Trace Tracer
}

// Tracer is the seam to OpenTelemetry: each method records one span in the
// trace a message carries (its W3C traceparent) and returns the
// traceparent to carry on, so one trace spans every hop (S8, O3).
type Tracer interface {
	// Detailed is true when decision spans are recorded: the queue manager
	// then builds the full explanation (every candidate and why it was
	// skipped) instead of taking the fast routing path.
	Detailed() bool
	Receive(ctx context.Context, traceparent string, e Event) (newTraceparent string)
	Decision(ctx context.Context, traceparent string, d routing.Decision, took time.Duration) (newTraceparent string)
	Attempt(ctx context.Context, traceparent, kind, target string, err error) (newTraceparent string)
}

// Manager schedules one server's queue.
type Manager struct {
	o      Options
	log    *slog.Logger
	mu     sync.Mutex
	msgs   map[string]*entry
	wake   chan struct{}
	work   chan *entry
	hops   map[string]*hopHealth
	lsSeen uint64
	// bodyMem is the bytes of just-accepted bodies held for their first
	// attempt (entry.body), bounded by maxBodyMem; under m.mu.
	bodyMem int64
	stop    context.CancelFunc
	wg      sync.WaitGroup

	// outFails counts consecutive connection failures per outbound
	// connector's smarthost (outbound.go); under mu.
	outFails map[string]int
}

type entry struct {
	id      string
	env     *envelope.Envelope
	due     time.Time
	running bool
	deleted bool
	again   bool // a retry or link-state change arrived while running
	// body is the message as accepted, kept for the first attempt so it
	// need not be read back from the queue; nil after that attempt or
	// when maxBodyMem was reached (the queue has it either way).
	body []byte
}

// maxBodyMem bounds the bodies kept in memory between Accept and their
// first attempt; past it, attempts read the body from the queue.
const maxBodyMem = 64 << 20

type hopHealth struct {
	fails      int
	markedDown bool
	changedAt  time.Time
}

// New makes a manager; Start runs it.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Params == nil {
		r := o.Org.Routing
		o.Params = func() routing.Params {
			return routing.Params{MinAge: r.EffectiveMinAge(), HopLimit: r.HopLimit, Spread: r.Spread}
		}
	}
	return &Manager{o: o, log: o.Logger, msgs: map[string]*entry{}, wake: make(chan struct{}, 1),
		work: make(chan *entry), hops: map[string]*hopHealth{}, outFails: map[string]int{}}
}

// Start loads the queue left by the last run and starts scheduling.
func (m *Manager) Start(ctx context.Context) error {
	now := m.o.Now()
	err := m.o.Queue.Scan(func(id string, raw []byte) error {
		env, err := envelope.Unmarshal(raw)
		if err != nil {
			m.log.Error("skipping unreadable queue entry; it stays in the queue for an operator", "queue_id", id, "err", err)
			return nil
		}
		m.msgs[id] = &entry{id: id, env: env, due: now}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load queue: %w", err)
	}
	if len(m.msgs) > 0 {
		m.log.Info("queue loaded", "messages", len(m.msgs))
	}
	m.lsSeen = m.o.LinkState.Version()
	ctx, m.stop = context.WithCancel(ctx)
	for i := 0; i < m.o.Workers; i++ {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.worker(ctx) }()
	}
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.loop(ctx) }()
	go func() { defer m.wg.Done(); m.prober(ctx) }()
	return nil
}

// Close stops scheduling and waits for attempts in flight: they finish, or
// their messages stay queued for the next start.
func (m *Manager) Close() {
	if m.stop != nil {
		m.stop()
	}
	m.wg.Wait()
}

// org is the configuration in force: the directory's, which a reload
// swaps, so message_class, the report domain, retry, expiry and probe
// timings follow a reload without a restart.
func (m *Manager) org() *config.Org {
	if m.o.Directory != nil {
		if o := m.o.Directory.Org(); o != nil {
			return o
		}
	}
	return m.o.Org
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) event(e Event) {
	if m.o.OnEvent != nil {
		m.o.OnEvent(e)
	}
}

// Accept makes a message received by smtpd durable (S2) and schedules it.
func (m *Manager) Accept(ctx context.Context, in *smtpd.Incoming) (string, error) {
	now := m.o.Now()
	id := m.o.Queue.NewID()
	// Size is the message as its sender gave it, without the headers the
	// organization adds on the way (R11 is checked against it everywhere).
	size := in.Size
	if size <= 0 {
		size = int64(len(in.Body))
	}
	env := &envelope.Envelope{ID: id, OriginID: id, MessageID: in.MessageID, From: in.From, SenderUser: in.Principal.User,
		Arrived: now, FirstSeen: now, Size: size, TraceParent: in.TraceParent}
	if in.Route != nil {
		env.OriginID, env.FirstSeen, env.Hops, env.Visited, env.Bounce = in.Route.OriginID, in.Route.FirstSeen, in.Route.Hops, in.Route.Visited, in.Route.Bounce
		env.SenderUser = in.Route.User
		if in.Route.Size > 0 {
			env.Size = in.Route.Size
		}
	}
	recv := Event{Kind: "received", QueueID: id, OriginID: env.OriginID, MessageID: env.MessageID, Details: map[string]string{
		"from": env.From, "remote": in.Remote, "size": fmt.Sprint(env.Size), "recipients": fmt.Sprint(len(in.Recipients)), "hops": fmt.Sprint(env.Hops)}}
	if m.o.Trace != nil {
		if tp := m.o.Trace.Receive(ctx, env.TraceParent, recv); tp != "" {
			env.TraceParent = tp
		}
	}
	if env.TraceParent == "" {
		env.TraceParent = newTraceParent()
	}
	seen := map[string]bool{}
	for _, r := range in.Recipients {
		key := strings.ToLower(r)
		if seen[key] {
			continue
		}
		seen[key] = true
		rc := envelope.Recipient{Addr: r, State: envelope.Pending}
		if meta, ok := in.RcptMeta[key]; ok {
			rc = meta
			rc.Addr, rc.State = r, envelope.Pending
		}
		env.Recipients = append(env.Recipients, rc)
	}
	if err := m.o.Queue.Put(ctx, id, env.Marshal(), in.Body); err != nil {
		return "", err
	}
	m.event(recv)
	e := &entry{id: id, env: env, due: now}
	m.mu.Lock()
	if m.bodyMem+int64(cap(in.Body)) <= maxBodyMem {
		e.body = in.Body
		m.bodyMem += int64(cap(in.Body))
	}
	m.msgs[id] = e
	m.mu.Unlock()
	m.poke()
	return id, nil
}

// newTraceParent starts a W3C trace context for a message that arrived
// without one, so every hop carries the same trace id (S8).
func newTraceParent() string {
	var b [24]byte
	rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

func (m *Manager) loop(ctx context.Context) {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	tick := time.NewTicker(200 * time.Millisecond) // link-state version check
	defer tick.Stop()
	for {
		next := m.dispatch(ctx)
		if ctx.Err() != nil {
			return
		}
		d := time.Second
		if !next.IsZero() {
			d = max(min(next.Sub(m.o.Now()), time.Minute), time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		case <-tick.C:
			m.checkLinkState()
		}
	}
}

// checkLinkState reroutes at once every message with recipients waiting or
// retrying when link state changed (R10, S6).
func (m *Manager) checkLinkState() {
	v := m.o.LinkState.Version()
	m.mu.Lock()
	changed := v != m.lsSeen
	m.lsSeen = v
	if changed {
		now := m.o.Now()
		for _, e := range m.msgs {
			if e.running {
				e.again = true
			} else {
				e.due = now
			}
		}
	}
	m.mu.Unlock()
}

// Depth is the number of messages in the queue.
func (m *Manager) Depth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs)
}

// LinkStateChanged asks for an immediate reroute (the admin API calls it).
func (m *Manager) LinkStateChanged() { m.checkLinkState(); m.poke() }

// dispatch hands due entries to workers and returns the next due time.
func (m *Manager) dispatch(ctx context.Context) time.Time {
	for {
		now := m.o.Now()
		m.mu.Lock()
		var due []*entry
		var next time.Time
		for _, e := range m.msgs {
			if e.running {
				continue
			}
			if !e.due.After(now) {
				due = append(due, e)
			} else if next.IsZero() || e.due.Before(next) {
				next = e.due
			}
		}
		sort.Slice(due, func(i, j int) bool { return due[i].id < due[j].id })
		for _, e := range due {
			e.running = true
		}
		m.mu.Unlock()
		if len(due) == 0 {
			return next
		}
		for i, e := range due {
			select {
			case m.work <- e:
			case <-ctx.Done():
				m.mu.Lock()
				for _, r := range due[i:] {
					r.running = false
				}
				m.mu.Unlock()
				return next
			}
		}
	}
}

func (m *Manager) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.work:
			done, due := m.process(ctx, e)
			m.mu.Lock()
			e.running = false
			m.dropBodyLocked(e)
			if done || e.deleted {
				delete(m.msgs, e.id)
			} else {
				e.due = due
				if e.again {
					e.again, e.due = false, m.o.Now()
				}
			}
			m.mu.Unlock()
			m.poke()
		}
	}
}

// dropBodyLocked releases an entry's in-memory body (after its first
// attempt, or when it leaves the queue unattempted). Called with m.mu held.
func (m *Manager) dropBodyLocked(e *entry) {
	if e.body != nil {
		m.bodyMem -= int64(cap(e.body))
		e.body = nil
	}
}

// errRetry marks a transient local failure.
var errRetry = errors.New("retry later")

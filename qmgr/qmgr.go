// Package qmgr is a server's queue manager (Postfix's qmgr): it takes each
// message smtpd accepted and makes it durable before 250 is answered (S2):
// in the local store when every recipient is delivered there at once, else
// in the queue. Then, per recipient, it asks the routing package where it
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/queue"
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
	// Envelope reads one message's envelope back (queue.ErrNotFound
	// when it is gone).
	Envelope(id string) ([]byte, error)
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
	// Rule and Took describe a "routed" event's decision: the rule taken
	// (routing.Decision.Rule) and how long it took when the tracer asked
	// for it to be timed (Tracer.DecisionSample), else negative. The
	// decision metrics are counted from these events, so the decision
	// itself carries no counter.
	Rule string
	Took time.Duration
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
	// MaxActive bounds the messages whose envelope is kept in memory
	// (0: DefaultMaxActive); the others wait on disk (sched.go).
	MaxActive int
	OnEvent   func(Event)
	// Trace, when set, wraps each routing decision and attempt (telemetry).
	Trace Tracer
	// RelayAtAccept lets Accept relay a message from outside the
	// organization to its next hop before answering, when every
	// recipient goes to a server of the organization or a local store:
	// the next hop's 250 (after its own durable commit) makes the message
	// safe, and it never enters this server's queue (attemptAtAccept).
	RelayAtAccept bool
}

// Tracer is the seam to OpenTelemetry: each method records one span in the
// trace a message carries (its W3C traceparent) and returns the
// traceparent to carry on, so one trace spans every hop (S8, O3).
type Tracer interface {
	// Detailed reports whether decision spans are recorded: the queue
	// manager then makes each decision with its full explanation (every
	// candidate and why it was skipped) instead of taking the fast
	// routing path. Asked once, by New: it must not change.
	Detailed() bool
	// DecisionSample is a flag the tracer sets when it wants the next
	// decision timed for its latency sample; the queue manager clears it
	// on the decision it times (only those read the clock: two clock
	// reads cost as much as a fast decision on a virtual machine). Asked
	// once, by New; nil: no decision is timed.
	DecisionSample() *atomic.Bool
	Receive(ctx context.Context, traceparent string, e Event) (newTraceparent string)
	// Decision records one routing decision made with its explanation
	// (only when Detailed); took < 0 when it was not timed. Every
	// decision, detailed or not, is also a "routed" Event.
	Decision(ctx context.Context, traceparent string, d routing.Decision, took time.Duration) (newTraceparent string)
	Attempt(ctx context.Context, traceparent, kind, target string, err error) (newTraceparent string)
}

// Manager schedules one server's queue.
type Manager struct {
	o    Options
	log  *slog.Logger
	dobs *DecisionObserver // o.Trace's view of routing decisions
	mu   sync.Mutex
	msgs map[string]*entry // every queued message, in memory or waiting on disk
	s    *sched
	wake chan struct{}
	work chan *entry
	hops map[string]*hopHealth
	// lastGraph is the link state the waiting messages were last
	// checked against (checkLinkState).
	lastGraph *linkstate.Graph
	// bodyMem is the bytes of just-accepted bodies held for their first
	// attempt (entry.body), bounded by maxBodyMem; under m.mu.
	bodyMem int64
	stop    context.CancelFunc
	wg      sync.WaitGroup

	// outFails counts consecutive connection failures per outbound
	// connector's smarthost (outbound.go); under mu.
	outFails map[string]int
}

// DefaultMaxActive is how many envelopes the scheduler keeps in memory at
// most: a few seconds of ingress at full speed. 100,000 waiting messages
// then cost their stubs only (about 200 bytes each), not their envelopes.
const DefaultMaxActive = 10000

// entry is one queued message. Fields other than id, env and body are the
// scheduler's, under m.mu; a running entry's env belongs to its worker.
type entry struct {
	id string
	// env is nil while the message waits on disk (see sched); raw is
	// env as the queue holds it, so finish writes only what changed.
	env *envelope.Envelope
	raw []byte
	// loaded: counted in sched.active (env is or is being read in).
	loaded  bool
	due     time.Time
	hidx    int      // index in sched.retry, -1 when not in it
	dests   []string // what its pending recipients wait on (sched.byDest)
	running bool
	deleted bool
	again   bool // a retry or link-state change arrived while running
	dirty   bool // env holds changes the queue could not save: keep it loaded
	// force: the operator asked for a retry of every pending recipient.
	// wake: the destinations whose path changed: recipients toward them
	// are attempted before their next retry. Both are read by the next
	// attempt; the *Later copies collect what arrives while one runs.
	force, forceLater bool
	wake, wakeLater   []string
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
	if o.MaxActive <= 0 {
		o.MaxActive = DefaultMaxActive
	}
	if o.Params == nil {
		r := o.Org.Routing
		o.Params = func() routing.Params {
			return routing.Params{MinAge: r.EffectiveMinAge(), HopLimit: r.HopLimit, Spread: r.Spread}
		}
	}
	return &Manager{o: o, log: o.Logger, dobs: NewDecisionObserver(o.Trace), msgs: map[string]*entry{}, s: newSched(o.MaxActive), wake: make(chan struct{}, 1),
		work: make(chan *entry), hops: map[string]*hopHealth{}, outFails: map[string]int{}}
}

// Start starts scheduling and reads the queue left by the last run in the
// background, one envelope at a time: each message becomes a stub in the
// scheduler (its envelope is read again when it is attempted), so neither
// start-up nor memory grows with the whole queue at once, and new mail is
// accepted and delivered meanwhile.
func (m *Manager) Start(ctx context.Context) error {
	// Messages accepted from now on have larger ids (queue ids are
	// time-ordered); the loader stops before them.
	cutoff := m.o.Queue.NewID()
	m.mu.Lock()
	m.lastGraph = m.o.LinkState.Graph()
	m.mu.Unlock()
	ctx, m.stop = context.WithCancel(ctx)
	for i := 0; i < m.o.Workers; i++ {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.worker(ctx) }()
	}
	m.wg.Add(3)
	go func() { defer m.wg.Done(); m.loop(ctx) }()
	go func() { defer m.wg.Done(); m.prober(ctx) }()
	go func() { defer m.wg.Done(); m.load(ctx, cutoff) }()
	return nil
}

var errLoaded = errors.New("loaded up to the start")

// load gives the scheduler every message queued before cutoff, oldest
// first. A message is due at its next retry, a never-attempted one now; a
// waiting recipient is due now when what it waits on is reachable now
// (link state may have changed while the server was down).
func (m *Manager) load(ctx context.Context, cutoff string) {
	now := m.o.Now()
	g := m.o.LinkState.Graph()
	snap := m.o.Directory.Snapshot()
	n := 0
	err := m.o.Queue.Scan(func(id string, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if id >= cutoff {
			return errLoaded
		}
		env, err := envelope.Unmarshal(raw)
		if err != nil {
			m.log.Error("skipping unreadable queue entry; it stays in the queue for an operator", "queue_id", id, "err", err)
			return nil
		}
		due := dueOf(env, now)
		for i := range env.Recipients {
			r := &env.Recipients[i]
			if r.State != envelope.Pending || !r.Waiting {
				continue
			}
			if r.Stage == envelope.StageNew {
				r.Blockers = blockers(snap, m.o.Server, r.Addr, false)
			}
			waits := append([]string{destOf(m.o.Server, r)}, r.Blockers...)
			for _, d := range waits {
				if d == routeKey || d != "" && reachable(g, m.o.Server, d) {
					due = now
				}
			}
		}
		m.mu.Lock()
		if _, ok := m.msgs[id]; !ok {
			e := &entry{id: id, hidx: -1}
			m.msgs[id] = e
			m.s.setDests(e, destsOf(m.o.Server, env))
			m.s.schedule(e, due)
			n++
		}
		m.mu.Unlock()
		if n%256 == 1 {
			m.poke()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errLoaded) && ctx.Err() == nil {
		m.log.Error("reading the queue stopped; messages not read yet are delivered after the next start", "loaded", n, "err", err)
	}
	if n > 0 {
		m.log.Info("queue loaded", "messages", n)
	}
	m.poke()
}

func reachable(g *linkstate.Graph, from, to string) bool {
	_, ok := g.NextHop(from, to)
	return ok
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
	m.event(recv)
	e := &entry{id: id, env: env}
	if m.attemptAtAccept(ctx, e, in.Body, m.o.RelayAtAccept && in.Route == nil) {
		return id, nil
	}
	e.raw = env.Marshal()
	if err := m.o.Queue.Put(ctx, id, e.raw, in.Body); err != nil {
		return "", err
	}
	m.addFresh(e, in.Body)
	return id, nil
}

// attemptAtAccept makes the first attempt of a message before it is
// queued, and reports whether that finished every recipient: delivered
// into a local store, or (with relay) handed to the next hop, which
// answers 250 only after its own durable commit. Then that commit is the
// message's one durable write and it never enters this server's queue
// (issue 11 item 1): no queue put, sync and delete, no wait for a worker.
// Otherwise the decisions and results of the attempt stay in the envelope,
// which the caller queues: a recipient already delivered or relayed is
// not attempted again, one that failed is reported, one deferred is
// retried. Only when every recipient can be finished here (local, or
// relayed when relay is set) is anything delivered or sent; a message
// with a recipient for an outbound connector, or one that must wait, is
// queued with its decisions made.
//
// relay is set for mail from outside the organization only: a server that
// relays at accept keeps its client waiting on the next hop, and if the
// next hop did the same for mail from servers, sessions between servers
// could wait on each other. A crash after a delivery or relay here and
// before 250 makes the client send again, as a crash between the queue's
// commit and 250 would. A relay cut short here (its time is bounded by
// acceptRelayTimeout) is retried from the queue under the same origin id,
// which the final store deduplicates.
func (m *Manager) attemptAtAccept(ctx context.Context, e *entry, body []byte, relay bool) bool {
	env := e.env
	now := m.o.Now()
	snap := m.o.Directory.Snapshot()
	p := m.plan(ctx, e, snap, m.o.LinkState.Graph(), m.o.Params(), now)
	forwarded := 0
	for _, idx := range p.forward {
		forwarded += len(idx)
	}
	if len(p.outbound) > 0 || forwarded > 0 && !relay || len(p.local)+forwarded != len(env.Recipients) {
		return false
	}
	for _, i := range p.local {
		r := &env.Recipients[i]
		if err := m.deliverLocal(ctx, snap, env, r, body); err != nil {
			m.retry(env, r, "4.3.0", "local delivery failed: "+err.Error(), now)
		}
	}
	if forwarded > 0 {
		rctx, cancel := context.WithTimeout(ctx, acceptRelayTimeout)
		defer cancel()
		for hop, idx := range p.forward {
			m.relay(rctx, snap, env, hop, idx, body, now)
		}
	}
	for _, r := range env.Recipients {
		if r.State != envelope.Delivered {
			return false
		}
	}
	return true
}

// acceptRelayTimeout bounds a relay made before answering the client
// (attemptAtAccept): past it the message is queued and retried, and the
// client still gets its answer within smtpd's minute.
const acceptRelayTimeout = 20 * time.Second

// addFresh schedules a message just queued for its first attempt, with its
// envelope and body in memory while there is room.
func (m *Manager) addFresh(e *entry, body []byte) {
	m.mu.Lock()
	m.msgs[e.id] = e
	m.s.setDests(e, destsOf(m.o.Server, e.env))
	if !m.s.holdable() {
		e.env, e.raw = nil, nil // read back from the queue when its turn comes
	} else if m.bodyMem+int64(cap(body)) <= maxBodyMem {
		e.body = body
		m.bodyMem += int64(cap(body))
	}
	m.s.addFresh(e)
	m.mu.Unlock()
	m.poke()
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
			d = min(next.Sub(m.o.Now()), time.Minute)
			if d <= 0 {
				// Due but no room among the active messages: a
				// finishing worker pokes.
				d = time.Second
			}
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		case <-tick.C:
			m.checkLinkState(false)
		}
	}
}

// checkLinkState reroutes at once the messages whose path changed: for
// each server messages are routed toward, the next hop from here in the
// new link state is compared with the last one, and only the messages
// toward a server whose next hop changed (or that became reachable or
// unreachable), or routed to an outbound connector that went down or came
// back, are woken (R10, R13b, S6). Messages waiting for a routing
// decision are woken by every change; decisions also woken when force is
// set (a directory or store_min_age change, which leaves the graph as it
// is).
func (m *Manager) checkLinkState(force bool) {
	g := m.o.LinkState.Graph()
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.lastGraph
	m.lastGraph = g
	if old == g && !force {
		return
	}
	now := m.o.Now()
	for dest := range m.s.byDest {
		if dest == routeKey || old != g && hopChanged(old, g, m.o.Server, dest) {
			m.s.wake(dest, now)
		}
	}
}

func hopChanged(old, cur *linkstate.Graph, from, to string) bool {
	if old == nil {
		return true
	}
	if name, ok := strings.CutPrefix(to, outboundKey); ok {
		return outboundUp(old, name) != outboundUp(cur, name)
	}
	h1, ok1 := old.NextHop(from, to)
	h2, ok2 := cur.NextHop(from, to)
	return ok1 != ok2 || h1 != h2
}

// outboundUp reports whether an outbound connector is in link state and up.
func outboundUp(g *linkstate.Graph, name string) bool {
	for _, c := range g.Outbound() {
		if c.Name == name {
			return c.Up
		}
	}
	return false
}

// Depth is the number of messages in the queue.
func (m *Manager) Depth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs)
}

// LinkStateChanged asks for an immediate reroute (the admin API, runtime
// changes and reloads call it).
func (m *Manager) LinkStateChanged() { m.checkLinkState(true); m.poke() }

// dispatch hands entries to workers while the scheduler has one due, and
// returns when the next retry is due.
func (m *Manager) dispatch(ctx context.Context) time.Time {
	for {
		m.mu.Lock()
		e := m.s.next(m.o.Now())
		next := m.s.nextDue()
		m.mu.Unlock()
		if e == nil {
			return next
		}
		select {
		case m.work <- e:
		case <-ctx.Done():
			m.mu.Lock()
			e.running = false
			m.s.schedule(e, m.o.Now())
			m.mu.Unlock()
			return next
		}
	}
}

func (m *Manager) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.work:
			m.attempt(ctx, e)
			m.poke()
		}
	}
}

// attempt reads a message's envelope if it waited on disk, makes one
// attempt, and schedules what is left.
func (m *Manager) attempt(ctx context.Context, e *entry) {
	if e.env == nil {
		if err := m.readEnvelope(e); err != nil {
			m.mu.Lock()
			defer m.mu.Unlock()
			e.running = false
			m.dropBodyLocked(e)
			if errors.Is(err, queue.ErrNotFound) || errors.Is(err, errCorrupt) {
				m.log.Error("queued message cannot be read; it is no longer scheduled (an operator can inspect the queue)", "queue_id", e.id, "err", err)
				delete(m.msgs, e.id)
				m.s.remove(e)
				return
			}
			m.log.Error("cannot read a queued envelope; trying again later", "queue_id", e.id, "err", err)
			m.s.release(e)
			m.s.schedule(e, m.o.Now().Add(5*time.Second))
			return
		}
	}
	done, due := m.process(ctx, e)
	m.settle(e, done, due)
}

// settle schedules what an attempt left: the message leaves the scheduler,
// or waits (on disk, unless its state could not be saved) until due.
func (m *Manager) settle(e *entry, done bool, due time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.running = false
	m.dropBodyLocked(e)
	if done || e.deleted {
		delete(m.msgs, e.id)
		m.s.remove(e)
		return
	}
	e.force, e.forceLater = e.forceLater, false
	e.wake, e.wakeLater = e.wakeLater, nil
	if e.again {
		e.again, due = false, m.o.Now()
	}
	m.s.setDests(e, destsOf(m.o.Server, e.env))
	if !e.dirty {
		m.s.release(e) // on disk as it is; read again at the next attempt
	}
	m.s.schedule(e, due)
}

var errCorrupt = errors.New("corrupt envelope")

// readEnvelope reads the envelope of a message that waited on disk.
func (m *Manager) readEnvelope(e *entry) error {
	raw, err := m.o.Queue.Envelope(e.id)
	if err != nil {
		return err
	}
	env, err := envelope.Unmarshal(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errCorrupt, err)
	}
	m.mu.Lock() // the admin view reads env under the lock
	e.env, e.raw = env, raw
	m.mu.Unlock()
	return nil
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

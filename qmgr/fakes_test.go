package qmgr

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/queue"
	"pfrouter/relay"
	"pfrouter/smtpd"
	"pfrouter/store"
)

// The fakes below stand in at the queue manager's own seams (Queue,
// Deliverer, Relayer); routing, directory and link state are the real
// packages, as they are pure.

// testOrg: a1 holds the hierarchy and /Local's replica; /Remote's only
// replica is on b1 across connector ab (a1|b1). alice's mailbox is on a1
// (reports to her are delivered locally).
const testOrg = `
organization: Q
domains: [q.example]
secret: q-secret-0123456789abcdef0123456789
routing: {store_min_age: 0, retry_initial: 1s, retry_max: 8s, failure_threshold: 2, probe_interval: 50ms, hold_down: 50ms}
routing_groups: [{name: rg-a}, {name: rg-b}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
servers:
  - name: a1
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:2501"}
    stores:
      - {name: a1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}
      - {name: a1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}
  - name: b1
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:2502"}
    stores: [{name: b1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Local, hierarchy: PF, addresses: [local@q.example], replicas: [a1-pub]}
  - {path: /Remote, hierarchy: PF, addresses: [remote@q.example], replicas: [b1-pub]}
  - {path: /Remote2, hierarchy: PF, addresses: [remote2@q.example], replicas: [b1-pub]}
users:
  - {name: alice, addresses: [alice@q.example], mailbox_store: a1-mbx, password: alice-pw}
`

// memQueue is an in-memory Queue. putHook, when set, runs inside Put
// before the message is stored (a commit under way).
type memQueue struct {
	mu      sync.Mutex
	n       int
	envs    map[string][]byte
	bodies  map[string][]byte
	putHook func(ctx context.Context)
	// setHook, when set, runs in SetEnvelope (a slow disk); sets counts
	// the envelope writes.
	setHook func()
	sets    int
	// replaced records PutAndDelete calls as "new<-old".
	replaced []string
}

func newMemQueue() *memQueue {
	return &memQueue{envs: map[string][]byte{}, bodies: map[string][]byte{}}
}

func (q *memQueue) NewID() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n++
	return fmt.Sprintf("q%07d", q.n) // ordered like the queue's ids
}

func (q *memQueue) Put(ctx context.Context, id string, env, body []byte) error {
	if q.putHook != nil {
		q.putHook(ctx)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.envs[id], q.bodies[id] = bytes.Clone(env), bytes.Clone(body)
	return nil
}

func (q *memQueue) PutAndDelete(ctx context.Context, id string, env, body []byte, deleteID string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.envs[id], q.bodies[id] = bytes.Clone(env), bytes.Clone(body)
	delete(q.envs, deleteID)
	delete(q.bodies, deleteID)
	q.replaced = append(q.replaced, id+"<-"+deleteID)
	return nil
}

func (q *memQueue) SetEnvelope(id string, env []byte) error {
	if q.setHook != nil {
		q.setHook()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sets++
	if _, ok := q.envs[id]; !ok {
		return fmt.Errorf("%s: not queued", id)
	}
	q.envs[id] = bytes.Clone(env)
	return nil
}

func (q *memQueue) setCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sets
}

func (q *memQueue) Envelope(id string) ([]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, ok := q.envs[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, queue.ErrNotFound)
	}
	return b, nil
}

func (q *memQueue) Body(id string) ([]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, ok := q.bodies[id]
	if !ok {
		return nil, fmt.Errorf("%s: not queued", id)
	}
	return b, nil
}

func (q *memQueue) Delete(id string) error { q.DeleteLater(id); return nil }

func (q *memQueue) DeleteLater(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.envs, id)
	delete(q.bodies, id)
}

func (q *memQueue) Scan(fn func(id string, env []byte) error) error {
	q.mu.Lock()
	ids := make([]string, 0, len(q.envs))
	for id := range q.envs {
		ids = append(ids, id)
	}
	q.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		q.mu.Lock()
		env := q.envs[id]
		q.mu.Unlock()
		if err := fn(id, env); err != nil {
			return err
		}
	}
	return nil
}

func (q *memQueue) ids() []string {
	var out []string
	q.Scan(func(id string, _ []byte) error { out = append(out, id); return nil })
	return out
}

// memStore is a Deliverer that keeps what it was given.
type memStore struct {
	mu   sync.Mutex
	got  []store.Delivery
	seen map[string]bool
	fail error // when set, Deliver fails with it (a store that cannot write)
}

func (s *memStore) Deliver(_ context.Context, d store.Delivery) (uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, false, s.fail
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	key := d.Store + "|" + d.ID
	if s.seen[key] {
		return 1, true, nil
	}
	s.seen[key] = true
	s.got = append(s.got, d)
	return uint32(len(s.got)), false, nil
}

func (s *memStore) deliveries() []store.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Delivery(nil), s.got...)
}

// fakeRelay answers Send with a scripted reply per call and Probe with
// probeErr; it records what it was sent.
type fakeRelay struct {
	mu       sync.Mutex
	send     func(rcpts []string) ([]relay.RcptResult, error)
	probeErr error
	sent     [][]string
	bodies   [][]byte
	probes   int
}

func (f *fakeRelay) Send(_ context.Context, addr, from string, rcpts []string, body []byte) ([]relay.RcptResult, error) {
	f.mu.Lock()
	f.sent = append(f.sent, append([]string(nil), rcpts...))
	f.bodies = append(f.bodies, body)
	send := f.send
	f.mu.Unlock()
	if send == nil {
		out := make([]relay.RcptResult, len(rcpts))
		for i, r := range rcpts {
			out[i].Rcpt = r
		}
		return out, nil
	}
	return send(rcpts)
}

func (f *fakeRelay) Probe(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.probeErr
}

// replies answers every recipient of a Send with the reply for its
// address (nil: accepted).
func replies(by map[string]*relay.ReplyError) func([]string) ([]relay.RcptResult, error) {
	return func(rcpts []string) ([]relay.RcptResult, error) {
		out := make([]relay.RcptResult, len(rcpts))
		for i, r := range rcpts {
			out[i] = relay.RcptResult{Rcpt: r, Err: by[r]}
		}
		return out, nil
	}
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	m     *Manager
	q     *memQueue
	st    *memStore
	rl    *fakeRelay
	ls    *linkstate.Table
	org   *config.Org
	clock *clock
}

// newHarness builds a manager for server a1 over the fakes; it is not
// started (tests drive process directly) unless the test calls Start.
func newHarness(t *testing.T) *harness { t.Helper(); return newHarnessOrg(t, testOrg, nil) }

// newHarnessOrg is newHarness for another organization, with an outbound
// sender (nil: none).
func newHarnessOrg(t *testing.T, yaml string, out Outbound) *harness {
	t.Helper()
	org, err := config.Parse([]byte(yaml), "q.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	dir, err := directory.New(org, directory.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{q: newMemQueue(), st: &memStore{}, rl: &fakeRelay{}, ls: ls, org: org, clock: clk}
	h.m = New(Options{Server: "a1", Org: org, Queue: h.q, Store: h.st, Directory: dir, LinkState: ls, Relay: h.rl, Outbound: out,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.Now, Workers: 2})
	return h
}

// accept queues a message as smtpd would hand it over.
func (h *harness) accept(t *testing.T, from string, rcpts ...string) *entry {
	t.Helper()
	body := []byte("From: " + from + "\r\nSubject: t\r\nMessage-Id: <m@q.example>\r\n\r\nhello\r\n")
	id, err := h.m.Accept(context.Background(), &smtpd.Incoming{From: from, Recipients: rcpts, MessageID: "<m@q.example>", Body: body, Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.m.msgs[id]
}

// attempt runs one attempt of e now, as a worker would.
func (h *harness) attempt(e *entry) (done bool) {
	done, _ = h.m.process(context.Background(), e)
	return done
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func smtpdIncoming(from string, body []byte, rcpts ...string) *smtpd.Incoming {
	return &smtpd.Incoming{From: from, Recipients: rcpts, Body: body, Size: int64(len(body))}
}

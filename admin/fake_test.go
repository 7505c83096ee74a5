package admin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"pfrouter/linkstate"
	"pfrouter/routing"
)

// fakeOps is the test double at the Ops seam: it records each call and
// keeps a little state so replies can be checked.
type fakeOps struct {
	mu     sync.Mutex
	calls  []string
	minAge time.Duration
	conns  map[string]*linkstate.Connector
	srvs   map[string]*linkstate.Server
	queue  map[string]QueueItem
	reload error
}

func newFake() *fakeOps {
	return &fakeOps{
		minAge: 48 * time.Hour,
		conns: map[string]*linkstate.Connector{
			"tokyo-berlin": {Name: "tokyo-berlin", A: "rg-tokyo", B: "rg-berlin", Cost: 10, Up: true},
		},
		srvs: map[string]*linkstate.Server{"ex1": {Name: "ex1", RoutingGroup: "rg-tokyo"},
			"ex3": {Name: "ex3", RoutingGroup: "rg-berlin", Down: true, Causes: linkstate.Causes{linkstate.CauseHopHealth, linkstate.CauseMaintenance}}},
		queue: map[string]QueueItem{"q1": {ID: "q1", MessageID: "<m1@x>", From: "a@contoso.example", Size: 123,
			Arrived:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Recipients: []QueueRecipient{{Addr: "sales@contoso.example", State: "deferred", Reason: "no replica reachable"}}}},
	}
}

func (f *fakeOps) call(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeOps) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeOps) StoreMinAge() time.Duration { return f.minAge }
func (f *fakeOps) SetStoreMinAge(_ context.Context, d time.Duration, by string) error {
	f.call("SetStoreMinAge %s %s", d, by)
	f.minAge = d
	return nil
}
func (f *fakeOps) LinkState() LinkState {
	ls := LinkState{Version: 7, LinkStateVersion: 12}
	for _, c := range f.conns {
		ls.Connectors = append(ls.Connectors, *c)
	}
	for _, s := range f.srvs {
		ls.Servers = append(ls.Servers, *s)
	}
	return ls
}
func (f *fakeOps) SetConnectorCost(_ context.Context, name string, cost int, by string) error {
	f.call("SetConnectorCost %s %d %s", name, cost, by)
	c, ok := f.conns[name]
	if !ok {
		return fmt.Errorf("connector %q: %w", name, linkstate.ErrUnknown)
	}
	c.Cost, c.ChangedBy = cost, by
	return nil
}
func (f *fakeOps) SetConnectorState(_ context.Context, name string, up bool, by string) error {
	f.call("SetConnectorState %s %t %s", name, up, by)
	c, ok := f.conns[name]
	if !ok {
		return fmt.Errorf("connector %q: %w", name, ErrNotFound)
	}
	c.Up = up
	return nil
}
func (f *fakeOps) SetServerMaintenance(_ context.Context, name string, down bool, by string) error {
	f.call("SetServerMaintenance %s %t %s", name, down, by)
	s, ok := f.srvs[name]
	if !ok {
		return fmt.Errorf("server %q: %w", name, ErrNotFound)
	}
	s.Down = down
	return nil
}
func (f *fakeOps) AddStore(_ context.Context, server, name, kind, hier string) error {
	f.call("AddStore %s %s %s %s", server, name, kind, hier)
	if server != "ex1" {
		return fmt.Errorf("server %q: %w", server, ErrNotFound)
	}
	return nil
}
func (f *fakeOps) AddReplica(_ context.Context, hier, path, store string) error {
	f.call("AddReplica %s %s %s", hier, path, store)
	if store == "taken" {
		return &FieldError{Field: "store", Msg: "already holds a replica"}
	}
	return nil
}
func (f *fakeOps) RenameFolder(_ context.Context, hier, path, to string) error {
	f.call("RenameFolder %s %s %s", hier, path, to)
	if path == "/missing" {
		return &FieldError{Field: "folder", Msg: "not a folder"}
	}
	return nil
}
func (f *fakeOps) DeleteFolder(_ context.Context, hier, path string) error {
	f.call("DeleteFolder %s %s", hier, path)
	if path == "/missing" {
		return &FieldError{Field: "folder", Msg: "not a folder"}
	}
	return nil
}
func (f *fakeOps) SetFolderPermission(_ context.Context, hier, path, principal, role string) error {
	f.call("SetFolderPermission %s %s %s %s", hier, path, principal, role)
	if path == "/missing" {
		return &FieldError{Field: "folder", Msg: "not a folder"}
	}
	return nil
}
func (f *fakeOps) Route(_ context.Context, at, rcpt string, now time.Time) (routing.Decision, error) {
	f.call("Route %s %s %s", at, rcpt, now.UTC().Format(time.RFC3339))
	if rcpt == "nobody@contoso.example" {
		return routing.Decision{}, fmt.Errorf("%s: %w", rcpt, ErrNotFound)
	}
	return routing.Decision{Recipient: rcpt, At: at, Now: now, Outcome: routing.Deliver, Store: "ex3-pub", Server: "ex3", Route: []string{"ex1", "ex3"}, Cost: 10}, nil
}
func (f *fakeOps) QueueList(context.Context) ([]QueueItem, error) {
	f.call("QueueList")
	var out []QueueItem
	for _, it := range f.queue {
		out = append(out, it)
	}
	return out, nil
}
func (f *fakeOps) QueueShow(_ context.Context, id string) (QueueItem, error) {
	f.call("QueueShow %s", id)
	it, ok := f.queue[id]
	if !ok {
		return QueueItem{}, fmt.Errorf("message %q: %w", id, ErrNotFound)
	}
	return it, nil
}
func (f *fakeOps) QueueRetry(_ context.Context, id string) error {
	f.call("QueueRetry %s", id)
	if _, ok := f.queue[id]; !ok && id != "" {
		return fmt.Errorf("message %q: %w", id, ErrNotFound)
	}
	return nil
}
func (f *fakeOps) QueueDelete(_ context.Context, id string) error {
	f.call("QueueDelete %s", id)
	if _, ok := f.queue[id]; !ok {
		return fmt.Errorf("message %q: %w", id, ErrNotFound)
	}
	return nil
}
func (f *fakeOps) Reload(context.Context) error {
	f.call("Reload")
	return f.reload
}

var errBadConfig = errors.New("org.yaml:12: connectors[0].cost: must be 1–100")

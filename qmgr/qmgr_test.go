package qmgr

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/relay"
	"pfrouter/smtpd"
)

// Scheduling: a started manager delivers an accepted message to a local
// replica (R7) and relays another to the next hop, then both leave the
// queue.
func TestSchedulingDeliversAndRelays(t *testing.T) {
	h := newHarness(t)
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.m.Close()
	h.accept(t, "alice@q.example", "local@q.example", "remote@q.example")
	eventually(t, 10*time.Second, "delivered, relayed and gone from the queue", func() bool {
		h.rl.mu.Lock()
		sent := len(h.rl.sent)
		h.rl.mu.Unlock()
		return len(h.st.deliveries()) == 1 && sent == 1 && len(h.q.ids()) == 0 && h.m.Depth() == 0
	})
	if d := h.st.deliveries()[0]; d.Store != "a1-pub" || d.Folder != "/Local" {
		t.Errorf("local delivery %+v", d)
	}
	if got := h.rl.sent[0]; len(got) != 1 || got[0] != "remote@q.example" {
		t.Errorf("relayed %v", got)
	}
}

// Issue 10 item 4: a Put that commits after its caller's context ended
// (the client went away mid-commit) still makes Accept schedule the
// message, so it is delivered now and not at the next restart.
func TestAcceptSchedulesCommitAfterContextEnds(t *testing.T) {
	h := newHarness(t)
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	h.q.putHook = func(context.Context) { cancel() } // the context ends while the commit runs
	body := []byte("Subject: late\r\n\r\nx\r\n")
	// A recipient on another server: the message is queued (a local one
	// would be delivered before Accept returns, without the queue).
	id, err := h.m.Accept(ctx, smtpdIncoming("alice@q.example", body, "remote@q.example"))
	if err != nil || id == "" {
		t.Fatalf("Accept of a committed message: %q %v", id, err)
	}
	eventually(t, 10*time.Second, "the late-committed message relayed", func() bool {
		h.rl.mu.Lock()
		defer h.rl.mu.Unlock()
		return len(h.rl.sent) == 1
	})
}

// Backoff: retry_initial doubling up to retry_max.
func TestBackoffDoublesUpToMax(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	for _, c := range []struct {
		attempts int // before this failure
		want     time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {3, 8 * time.Second}, {4, 8 * time.Second}, {20, 8 * time.Second}} {
		r := &envelope.Recipient{Attempts: c.attempts}
		h.m.backoff(r, "4.4.1", "x", now)
		if got := r.NextAttempt.Sub(now); got != c.want || r.Attempts != c.attempts+1 {
			t.Errorf("after %d attempts: next in %s (attempts %d), want %s", c.attempts, got, r.Attempts, c.want)
		}
	}
}

// Issue 10 item 2: the next hop's replies are per-recipient answers. 5xx
// fails the recipient with the peer's text in the report, 4xx retries it
// with backoff; neither counts as a hop failure nor changes link state.
func TestReplyClasses(t *testing.T) {
	full := &relay.ReplyError{Command: "MAIL", Code: 552, Enhanced: "5.3.4", Message: "message size 9000 exceeds the limit"}
	cases := []struct {
		name      string
		reply     *relay.ReplyError
		state     string
		code      string
		reason    string
		nextAfter time.Duration
	}{
		{"accepted", nil, envelope.Delivered, "2.0.0", "", 0},
		{"5xx at RCPT", &relay.ReplyError{Command: "RCPT", Code: 550, Enhanced: "5.1.1", Message: "no such folder"}, envelope.Failed, "5.1.1", "refused by b1 at RCPT: 550 5.1.1 no such folder", 0},
		{"552 at MAIL", full, envelope.Failed, "5.3.4", "552 5.3.4 message size 9000 exceeds the limit", 0},
		{"4xx at DATA", &relay.ReplyError{Command: "DATA", Code: 451, Enhanced: "4.3.0", Message: "try later"}, envelope.Pending, "4.3.0", "deferred by b1 at DATA: 451 4.3.0 try later", time.Second},
		{"5xx without enhanced code", &relay.ReplyError{Command: "RCPT", Code: 554, Message: "no"}, envelope.Failed, "5.0.0", "554 no", 0},
		{"enhanced code of the wrong class", &relay.ReplyError{Command: "RCPT", Code: 450, Enhanced: "5.1.1", Message: "odd"}, envelope.Pending, "4.0.0", "450 5.1.1 odd", time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.rl.send = replies(map[string]*relay.ReplyError{"remote@q.example": c.reply})
			e := h.accept(t, "alice@q.example", "remote@q.example")
			before := h.ls.Version()
			h.attempt(e)
			r := e.env.Recipients[0]
			if r.State != c.state || r.Code != c.code || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("recipient %s %s %q, want %s %s %q", r.State, r.Code, r.Reason, c.state, c.code, c.reason)
			}
			if c.nextAfter > 0 && r.NextAttempt.Sub(h.clock.Now()) != c.nextAfter {
				t.Errorf("next attempt in %s, want %s", r.NextAttempt.Sub(h.clock.Now()), c.nextAfter)
			}
			if v := h.ls.Version(); v != before {
				t.Errorf("link-state version %d -> %d: a reply changed link state", before, v)
			}
			if hh := h.m.hops["b1"]; hh != nil && hh.fails != 0 {
				t.Errorf("a reply counted as %d hop failures", hh.fails)
			}
		})
	}
}

// Report replacement (S6, S7): a recipient refused by the next hop ends
// in an RFC 3464 report that replaces the message in one queue operation
// and carries the peer's reply; the null sender gets none.
func TestRefusalReportReplacesMessage(t *testing.T) {
	h := newHarness(t)
	h.rl.send = replies(map[string]*relay.ReplyError{"remote@q.example": {Command: "MAIL", Code: 552, Enhanced: "5.3.4", Message: "too big for b1"}})
	e := h.accept(t, "alice@q.example", "remote@q.example")
	if done := h.attempt(e); !done {
		t.Fatal("a message with every recipient failed stayed queued")
	}
	if len(h.q.replaced) != 1 || !strings.HasSuffix(h.q.replaced[0], "<-"+e.id) {
		t.Fatalf("report did not replace the message: %v", h.q.replaced)
	}
	ndrID := strings.SplitN(h.q.replaced[0], "<-", 2)[0]
	body, err := h.q.Body(ndrID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"multipart/report", "Status: 5.3.4", "too big for b1", "remote@q.example"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("report lacks %q:\n%s", want, body)
		}
	}
	h.m.mu.Lock()
	ndr := h.m.msgs[ndrID]
	h.m.mu.Unlock()
	if ndr == nil || !ndr.env.Bounce || ndr.env.From != "" || ndr.env.Recipients[0].Addr != "alice@q.example" {
		t.Fatalf("report not scheduled to the sender: %+v", ndr)
	}

	// A report that itself fails produces no second report.
	h2 := newHarness(t)
	h2.rl.send = h.rl.send
	e2 := h2.accept(t, "", "remote@q.example")
	if done := h2.attempt(e2); !done || len(h2.q.replaced) != 0 || len(h2.q.ids()) != 0 {
		t.Fatalf("null sender: done %t, replaced %v, queue %v", done, h2.q.replaced, h2.q.ids())
	}
}

// R13b: connection failures (not replies) count; after failure_threshold
// in a row the hop gets the hop-health cause in link state, and the
// recipients are retried, not failed.
func TestConnectionFailuresSetHopHealthCause(t *testing.T) {
	h := newHarness(t)
	h.rl.send = func([]string) ([]relay.RcptResult, error) {
		return nil, &relay.ConnError{Addr: "127.0.0.1:2502", Err: errors.New("connection refused")}
	}
	e := h.accept(t, "alice@q.example", "remote@q.example")
	h.attempt(e)
	if h.ls.Graph().ServerDown("b1") {
		t.Fatal("marked down after one failure; threshold is 2")
	}
	r := &e.env.Recipients[0]
	if r.State != envelope.Pending || r.Code != "4.4.1" {
		t.Fatalf("recipient after a connection failure: %s %s", r.State, r.Code)
	}
	r.NextAttempt = time.Time{}
	h.attempt(e)
	srv := serverState(h.ls, "b1")
	if !srv.Down || !srv.Causes.Has(linkstate.CauseHopHealth) || len(srv.Causes) != 1 {
		t.Fatalf("after two failures b1 is %+v, want down by hop-health", srv)
	}
	// With b1 down there is no path: the recipient waits for link state.
	r.NextAttempt = time.Time{}
	h.attempt(e)
	if !r.Waiting || r.State != envelope.Pending {
		t.Fatalf("recipient with its hop down: waiting %t state %s", r.Waiting, r.State)
	}
}

// Issue 10 item 3: the prober clears only the cause it owns. A hop marked
// down by hop health that is also in maintenance stays down when it
// answers probes again; it comes back only when the operator ends the
// maintenance.
func TestProberDoesNotEndMaintenance(t *testing.T) {
	h := newHarness(t)
	h.rl.send = func([]string) ([]relay.RcptResult, error) {
		return nil, &relay.ConnError{Addr: "127.0.0.1:2502", Err: errors.New("connection refused")}
	}
	h.m.hopFailed("b1", errors.New("refused"))
	h.m.hopFailed("b1", errors.New("refused"))
	if _, err := h.ls.SetServerCause("b1", linkstate.CauseMaintenance, true); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Minute) // past hold_down
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.m.Close()
	eventually(t, 10*time.Second, "the prober clears hop-health", func() bool {
		return !serverState(h.ls, "b1").Causes.Has(linkstate.CauseHopHealth)
	})
	if srv := serverState(h.ls, "b1"); !srv.Down || !srv.Causes.Has(linkstate.CauseMaintenance) || !h.ls.Graph().ServerDown("b1") {
		t.Fatalf("the prober brought back a server in maintenance: %+v", srv)
	}
	if _, err := h.ls.SetServerCause("b1", linkstate.CauseMaintenance, false); err != nil {
		t.Fatal(err)
	}
	if h.ls.Graph().ServerDown("b1") {
		t.Fatal("still down with no cause left")
	}
}

// A hop that still does not answer keeps its hop-health cause.
func TestProberKeepsDeadHopDown(t *testing.T) {
	h := newHarness(t)
	h.rl.probeErr = errors.New("connection refused")
	h.m.hopFailed("b1", errors.New("refused"))
	h.m.hopFailed("b1", errors.New("refused"))
	h.clock.Add(time.Minute)
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.m.Close()
	eventually(t, 10*time.Second, "two probes", func() bool {
		h.rl.mu.Lock()
		defer h.rl.mu.Unlock()
		return h.rl.probes >= 2
	})
	if srv := serverState(h.ls, "b1"); !srv.Causes.Has(linkstate.CauseHopHealth) {
		t.Fatalf("a hop failing its probes came back: %+v", srv)
	}
}

// R14 on a forwarding server: a recipient that comes back to a1 in the
// same stage for the same destination fails with 5.4.6; one that passed
// a1 toward another destination is forwarded.
func TestLoopCheckOnForward(t *testing.T) {
	for _, c := range []struct {
		name   string
		visits []envelope.Visit
		state  string
	}{
		{"passed a1 toward the hierarchy store", []envelope.Visit{{Server: "a1", Stage: envelope.StageHierarchy, Dest: "a1-pub"}}, envelope.Delivered},
		{"left a1 toward the same store", []envelope.Visit{{Server: "a1", Stage: envelope.StageTarget, Dest: "b1-pub"}}, envelope.Failed},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			e := h.accept(t, "alice@q.example", "remote@q.example")
			r := &e.env.Recipients[0]
			r.Stage, r.Server, r.Store, r.Visits = envelope.StageTarget, "b1", "b1-pub", c.visits
			e.env.Hops = len(c.visits)
			h.attempt(e)
			if r.State != c.state {
				t.Fatalf("state %s (%s %s), want %s", r.State, r.Code, r.Reason, c.state)
			}
			if c.state == envelope.Failed && r.Code != "5.4.6" {
				t.Fatalf("code %s, want 5.4.6", r.Code)
			}
		})
	}
}

func serverState(ls *linkstate.Table, name string) linkstate.Server {
	for _, s := range ls.Servers() {
		if s.Name == name {
			return s
		}
	}
	return linkstate.Server{}
}

// Issue 10 item 7: a reload's probe_interval applies to the running
// prober (it kept the interval it started with): from 1h down to 50ms,
// probes start within seconds.
func TestProbeIntervalFollowsReload(t *testing.T) {
	slow := strings.Replace(testOrg, "probe_interval: 50ms", "probe_interval: 1h", 1)
	h := newHarnessOrg(t, slow, nil)
	h.rl.probeErr = errors.New("connection refused")
	h.m.hopFailed("b1", errors.New("refused"))
	h.m.hopFailed("b1", errors.New("refused"))
	h.clock.Add(time.Minute)
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.m.Close()
	probes := func() int { h.rl.mu.Lock(); defer h.rl.mu.Unlock(); return h.rl.probes }
	time.Sleep(300 * time.Millisecond)
	if n := probes(); n != 0 {
		t.Fatalf("%d probes with probe_interval 1h", n)
	}
	fast, err := config.Parse([]byte(testOrg), "q.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(fast, directory.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.m.o.Directory.Replace(dir) // what a reload does
	eventually(t, 10*time.Second, "probes after the reload to 50ms", func() bool { return probes() >= 2 })
}

// Issue 11 item 1: a message whose every recipient is delivered into a
// local store at once is stored before Accept returns (so before 250, S2)
// and never written to the queue: the store's commit is its one durable
// write. A message with a recipient elsewhere is queued with its
// decisions made; the worker delivers the local recipient once and relays
// the other.
func TestLocalMessageDeliveredAtAcceptWithoutQueue(t *testing.T) {
	h := newHarness(t)
	var puts int
	h.q.putHook = func(context.Context) { puts++ }
	body := []byte("Subject: here\r\nMessage-Id: <here@q.example>\r\n\r\nx\r\n")
	id, err := h.m.Accept(context.Background(), smtpdIncoming("alice@q.example", body, "local@q.example", "alice@q.example"))
	if err != nil || id == "" {
		t.Fatalf("Accept: %q %v", id, err)
	}
	if got := h.st.deliveries(); len(got) != 2 {
		t.Fatalf("delivered before Accept returned: %d, want 2", len(got))
	}
	if puts != 0 || len(h.q.ids()) != 0 || h.m.Depth() != 0 {
		t.Fatalf("a message delivered at accept was queued: %d puts, queue %v, depth %d", puts, h.q.ids(), h.m.Depth())
	}
	if d := h.st.deliveries()[0]; d.ID != id+"|local@q.example" {
		t.Errorf("delivery id %q, want the origin queue id and the recipient (idempotent)", d.ID)
	}

	e := h.accept(t, "alice@q.example", "local@q.example", "remote@q.example")
	if e == nil || puts != 1 {
		t.Fatalf("a message with a remote recipient was not queued (%d puts)", puts)
	}
	// Decided at accept (no second routing decision), delivered by the
	// worker: delivering the local one first would cost a store commit
	// before the queue's, saving nothing.
	if r := e.env.Recipients; r[0].State != envelope.Pending || r[0].Store != "a1-pub" || r[1].State != envelope.Pending || r[1].Stage != envelope.StageTarget {
		t.Fatalf("queued state: %+v", r)
	}
	if done := h.attempt(e); !done {
		t.Fatal("message not finished after the relay")
	}
	if n := len(h.st.deliveries()); n != 3 {
		t.Errorf("local recipient of the queued message delivered %d times, want once", n-2)
	}
	if got := h.rl.sent; len(got) != 1 || len(got[0]) != 1 || got[0][0] != "remote@q.example" {
		t.Errorf("relayed %v, want only the remote recipient", got)
	}
}

// A store that cannot write at accept time does not lose the message: it
// is queued with the recipient deferred, and delivered by a later attempt.
func TestDeliveryFailureAtAcceptQueues(t *testing.T) {
	h := newHarness(t)
	h.st.fail = errors.New("disk full")
	e := h.accept(t, "alice@q.example", "local@q.example")
	if e == nil {
		t.Fatal("message neither delivered nor queued")
	}
	if r := e.env.Recipients[0]; r.State != envelope.Pending || r.Code != "4.3.0" || r.NextAttempt.IsZero() {
		t.Fatalf("recipient after a failed delivery at accept: %+v", r)
	}
	h.st.mu.Lock()
	h.st.fail = nil
	h.st.mu.Unlock()
	h.clock.Add(time.Minute)
	if done := h.attempt(e); !done || len(h.st.deliveries()) != 1 {
		t.Fatalf("retry: done %t, deliveries %d", done, len(h.st.deliveries()))
	}
}

// Issue 11 (end to end): with RelayAtAccept, a message from outside the
// organization whose recipients go to a peer server is relayed before
// Accept returns (the peer's 250 follows its durable commit, so 250 here
// still follows a durable write, S2) and never enters this server's queue;
// a recipient delivered locally in the same message is delivered too. The
// relay carries the origin id the peer deduplicates by.
func TestRelayAtAcceptSkipsTheQueue(t *testing.T) {
	h := newHarness(t)
	h.m.o.RelayAtAccept = true
	var puts int
	h.q.putHook = func(context.Context) { puts++ }
	var events []string
	h.m.o.OnEvent = func(e Event) { events = append(events, e.Kind+" "+e.Recipient) }
	body := []byte("Subject: far\r\nMessage-Id: <far@q.example>\r\n\r\nx\r\n")
	id, err := h.m.Accept(context.Background(), smtpdIncoming("alice@q.example", body, "remote@q.example", "local@q.example"))
	if err != nil || id == "" {
		t.Fatalf("Accept: %q %v", id, err)
	}
	if got := h.rl.sent; len(got) != 1 || len(got[0]) != 1 || got[0][0] != "remote@q.example" {
		t.Fatalf("relayed before Accept returned: %v, want the remote recipient once", got)
	}
	if n := len(h.st.deliveries()); n != 1 {
		t.Fatalf("local recipient delivered %d times at accept, want once", n)
	}
	if puts != 0 || len(h.q.ids()) != 0 || h.m.Depth() != 0 {
		t.Fatalf("a message relayed at accept was queued: %d puts, queue %v, depth %d", puts, h.q.ids(), h.m.Depth())
	}
	if !slices.Contains(events, "relayed remote@q.example") || !slices.Contains(events, "delivered local@q.example") {
		t.Errorf("events %v: want relayed and delivered", events)
	}
	route, err := envelope.DecodeRoute(headerValue(h.rl.bodies[0], envelope.HeaderRoute))
	if err != nil || route.OriginID != id || route.Hops != 1 {
		t.Errorf("relayed route %+v (%v), want origin id %s and one hop", route, err, id)
	}
}

// A relay that fails at accept loses nothing: the message is queued with
// the recipient deferred, and the retry from the queue carries the same
// origin id (the peer, which may have stored the first try, deduplicates).
// A refusal at accept is queued too, and the attempt that follows reports
// it (S6).
func TestRelayAtAcceptFailureQueues(t *testing.T) {
	h := newHarness(t)
	h.m.o.RelayAtAccept = true
	h.rl.send = func([]string) ([]relay.RcptResult, error) {
		return nil, &relay.ConnError{Addr: "127.0.0.1:2502", Err: errors.New("connection reset")}
	}
	e := h.accept(t, "alice@q.example", "remote@q.example")
	if e == nil {
		t.Fatal("message neither relayed nor queued")
	}
	if r := e.env.Recipients[0]; r.State != envelope.Pending || r.Code != "4.4.1" || r.NextAttempt.IsZero() {
		t.Fatalf("recipient after a failed relay at accept: %+v", r)
	}
	if len(h.q.ids()) != 1 {
		t.Fatalf("queue %v, want the message", h.q.ids())
	}
	h.rl.mu.Lock()
	h.rl.send = nil
	h.rl.mu.Unlock()
	h.clock.Add(time.Minute)
	if done := h.attempt(e); !done {
		t.Fatal("retry did not finish the message")
	}
	if len(h.rl.bodies) != 2 || headerValue(h.rl.bodies[0], envelope.HeaderRoute) != headerValue(h.rl.bodies[1], envelope.HeaderRoute) {
		t.Errorf("the retry's route differs from the first try's:\n%s\n%s", h.rl.bodies[0], h.rl.bodies[1])
	}

	h = newHarness(t)
	h.m.o.RelayAtAccept = true
	h.rl.send = replies(map[string]*relay.ReplyError{"remote@q.example": {Command: "RCPT", Code: 550, Enhanced: "5.1.1", Message: "no such folder"}})
	e = h.accept(t, "alice@q.example", "remote@q.example")
	if e == nil || e.env.Recipients[0].State != envelope.Failed {
		t.Fatalf("refused at accept: %+v", e)
	}
	if done := h.attempt(e); !done || len(h.q.replaced) != 1 {
		t.Fatalf("refusal at accept: done %t, reports %v", done, h.q.replaced)
	}
}

// Mail from another server of the organization is never relayed at
// accept (only the first server holds its client while it relays, so
// servers never wait on each other's sessions), nor mail to an outside
// recipient; without RelayAtAccept nothing is.
func TestRelayAtAcceptOnlyFromOutside(t *testing.T) {
	for _, c := range []struct {
		name string
		on   bool
		in   func(body []byte) *smtpd.Incoming
	}{
		{"from a server", true, func(body []byte) *smtpd.Incoming {
			in := smtpdIncoming("bob@example.net", body, "remote@q.example")
			in.Route = &envelope.Route{OriginID: "o1", Hops: 1, Visited: []string{"c1"}}
			return in
		}},
		{"option off", false, func(body []byte) *smtpd.Incoming { return smtpdIncoming("bob@example.net", body, "remote@q.example") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.m.o.RelayAtAccept = c.on
			id, err := h.m.Accept(context.Background(), c.in([]byte("Subject: x\r\n\r\nx\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			if len(h.rl.sent) != 0 || len(h.q.ids()) != 1 || h.q.ids()[0] != id {
				t.Fatalf("relayed %v, queue %v: want queued, not relayed", h.rl.sent, h.q.ids())
			}
		})
	}
}

func headerValue(msg []byte, name string) string {
	for _, l := range strings.Split(string(msg), "\r\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
		if l == "" {
			break
		}
	}
	return ""
}

package qmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/relay"
)

// fakeOutbound answers SendOutbound with a scripted reply and records the
// connector and recipients of each call.
type fakeOutbound struct {
	mu    sync.Mutex
	reply func(rcpts []string) ([]relay.RcptResult, error)
	probe func(connector string) error // nil: the smarthost answers
	calls []string                     // "connector:rcpt,rcpt", "probe:connector"
}

func (f *fakeOutbound) SendOutbound(_ context.Context, connector, from string, rcpts []string, body []byte) ([]relay.RcptResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, connector+":"+strings.Join(rcpts, ","))
	reply := f.reply
	f.mu.Unlock()
	return reply(rcpts)
}

// outboundOrg: "internet" for every outside domain homed here (a1);
// "partner" for example.net homed on b1.
var outboundOrg = strings.Replace(testOrg, "servers:\n", `outbound:
  - {name: internet, address_spaces: ["*"], smarthost: "mx.isp.example:25", source_servers: [a1]}
  - {name: partner, address_spaces: [example.net], smarthost: "mx.example.net:25", source_servers: [b1]}
servers:
`, 1)

// Issue 10 item 6: a recipient routed to an outbound connector homed on
// this server goes to its smarthost; one homed elsewhere is relayed to the
// connector's source server first, carrying the connector in its metadata.
// The smarthost's replies are per-recipient answers (accepted, 5xx fails,
// 4xx retries); a failure to reach it retries and marks nothing down.
func TestOutboundDelivery(t *testing.T) {
	out := &fakeOutbound{}
	h := newHarnessOrg(t, outboundOrg, out)
	out.reply = func(rcpts []string) ([]relay.RcptResult, error) {
		res := make([]relay.RcptResult, len(rcpts))
		for i, r := range rcpts {
			res[i].Rcpt = r
			switch {
			case strings.HasPrefix(r, "gone@"):
				res[i].Err = &relay.ReplyError{Command: "RCPT", Code: 550, Enhanced: "5.1.1", Message: "no such user"}
			case strings.HasPrefix(r, "busy@"):
				res[i].Err = &relay.ReplyError{Command: "RCPT", Code: 451, Enhanced: "4.3.0", Message: "try later"}
			}
		}
		return res, nil
	}
	e := h.accept(t, "alice@q.example", "ok@example.org", "gone@example.org", "busy@example.org", "bob@example.net")
	h.attempt(e)
	if got := strings.Join(out.calls, " "); got != "internet:ok@example.org,gone@example.org,busy@example.org" {
		t.Errorf("smarthost calls %q", got)
	}
	state := map[string]string{}
	for _, r := range e.env.Recipients {
		state[r.Addr] = r.State + " " + r.Code
	}
	want := map[string]string{"ok@example.org": "delivered 2.0.0", "gone@example.org": "failed 5.1.1", "busy@example.org": "pending 4.3.0", "bob@example.net": "delivered 2.0.0"}
	for a, w := range want {
		if state[a] != w {
			t.Errorf("%s: %s, want %s", a, state[a], w)
		}
	}
	if len(h.rl.sent) != 1 || strings.Join(h.rl.sent[0], ",") != "bob@example.net" {
		t.Errorf("relayed to b1 %v, want bob@example.net toward partner's source server", h.rl.sent)
	}
	for _, r := range e.env.Recipients {
		if r.Addr == "bob@example.net" && (r.Outbound != "partner" || r.Server != "b1" || r.Stage != envelope.StageTarget) {
			t.Errorf("bob's routing state %+v, want stage target on b1 via partner", r)
		}
	}

	// The smarthost cannot be reached: retried, nothing marked down.
	out.reply = func([]string) ([]relay.RcptResult, error) {
		return nil, &relay.ConnError{Addr: "mx.isp.example:25", Err: errors.New("connection refused")}
	}
	e2 := h.accept(t, "alice@q.example", "later@example.org")
	h.attempt(e2)
	if r := e2.env.Recipients[0]; r.State != envelope.Pending || !strings.Contains(r.Reason, "connection refused") {
		t.Errorf("unreachable smarthost: %+v, want pending with the reason", r)
	}
	for _, s := range h.ls.Servers() {
		if s.Down {
			t.Errorf("server %s marked down by a smarthost failure", s.Name)
		}
	}
}

func (f *fakeOutbound) ProbeOutbound(_ context.Context, connector string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "probe:"+connector)
	if f.probe != nil {
		return f.probe(connector)
	}
	return nil
}

// failoverOrg: two connectors for every outside domain homed here, "cheap"
// (cost 1) and "backup" (cost 5).
var failoverOrg = strings.Replace(testOrg, "servers:\n", `outbound:
  - {name: cheap, address_spaces: ["*"], smarthost: "mx1.isp.example:25", cost: 1, source_servers: [a1]}
  - {name: backup, address_spaces: ["*"], smarthost: "mx2.isp.example:25", cost: 5, source_servers: [a1]}
servers:
`, 1)

// Issue 10 item 6, R13b for outbound connectors: connection failures at
// the cheap connector's smarthost give it the hop-health cause after
// failure_threshold (2) in a row; the queued recipient is routed again at
// once (not at its retry time) to the next connector by cost; the
// smarthost's replies never count; the prober clears the cause once the
// smarthost answers and hold_down has passed, and only its own cause.
func TestOutboundFailoverOnHopHealth(t *testing.T) {
	out := &fakeOutbound{}
	h := newHarnessOrg(t, failoverOrg, out)
	var published []string
	h.m.o.SetOutboundHealth = func(c string, down bool, reason string) error {
		published = append(published, fmt.Sprintf("%s down=%v", c, down))
		_, err := h.ls.SetConnectorCause(c, linkstate.CauseHopHealth, down, "test", h.clock.Now())
		return err
	}
	cheapDown := true
	out.reply = func(rcpts []string) ([]relay.RcptResult, error) {
		out.mu.Lock()
		last := out.calls[len(out.calls)-1]
		out.mu.Unlock()
		if cheapDown && strings.HasPrefix(last, "cheap:") {
			return nil, &relay.ConnError{Addr: "mx1.isp.example:25", Err: errors.New("connection refused")}
		}
		res := make([]relay.RcptResult, len(rcpts))
		for i := range rcpts {
			res[i].Rcpt = rcpts[i]
			if strings.HasPrefix(rcpts[i], "refused@") { // a reply is about the recipient, never the link
				res[i].Err = &relay.ReplyError{Command: "RCPT", Code: 550, Enhanced: "5.1.1", Message: "no such user"}
			}
		}
		return res, nil
	}
	e := h.accept(t, "alice@q.example", "bob@example.org")
	h.attempt(e)
	cheap, _ := h.ls.Connector("cheap")
	if r := e.env.Recipients[0]; r.State != envelope.Pending || r.Outbound != "cheap" || !cheap.Up {
		t.Fatalf("after one failure: %+v, cheap %+v; want pending on cheap, cheap still up", r, cheap)
	}
	h.clock.Add(2 * time.Second) // the retry is due
	h.attempt(e)
	cheap, _ = h.ls.Connector("cheap")
	if cheap.Up || !cheap.Causes.Has(linkstate.CauseHopHealth) || len(cheap.Causes) != 1 {
		t.Fatalf("after 2 failures cheap is %+v, want down for hop-health only", cheap)
	}
	if strings.Join(published, ";") != "cheap down=true" {
		t.Errorf("published %v, want cheap down once", published)
	}
	// Not due yet (retry in 2s), but its connector is down: routed again now.
	h.attempt(e)
	if r := e.env.Recipients[0]; r.State != envelope.Delivered {
		t.Fatalf("recipient %+v after cheap went down, want delivered through backup", r)
	}
	if got := out.calls[len(out.calls)-1]; got != "backup:bob@example.org" {
		t.Errorf("last call %q, want backup:bob@example.org", got)
	}

	// A 5xx from backup's smarthost is no connection failure.
	for range 3 {
		e := h.accept(t, "alice@q.example", "refused@example.org")
		h.attempt(e)
	}
	if b, _ := h.ls.Connector("backup"); !b.Up {
		t.Errorf("backup marked down by recipient refusals: %+v", b)
	}

	// The prober: not before hold_down, then cleared when the smarthost
	// answers; an operator's maintenance stays.
	h.ls.SetUp("cheap", false, "operator", h.clock.Now())
	out.probe = func(string) error { return errors.New("still refused") }
	h.m.probeOutbound(context.Background(), h.clock.Now())
	if c, _ := h.ls.Connector("cheap"); !c.Causes.Has(linkstate.CauseHopHealth) {
		t.Fatalf("cleared while the probe fails: %+v", c)
	}
	out.probe = nil
	h.clock.Add(time.Second) // past hold_down
	h.m.probeOutbound(context.Background(), h.clock.Now())
	c, _ := h.ls.Connector("cheap")
	if c.Causes.Has(linkstate.CauseHopHealth) || !c.Causes.Has(linkstate.CauseMaintenance) || c.Up {
		t.Errorf("after a good probe cheap is %+v, want hop-health cleared, maintenance kept", c)
	}
}

// A waiting recipient's report says what failed last, not only that no
// route is left.
func TestWaitKeepsLastError(t *testing.T) {
	r := &envelope.Recipient{Reason: "smarthost mx failed: STARTTLS not offered"}
	got := withLastError(r, "no outbound connector usable")
	if got != "no outbound connector usable; last error: smarthost mx failed: STARTTLS not offered" {
		t.Fatalf("first wait: %q", got)
	}
	r.Reason, r.Waiting = got, true
	if again := withLastError(r, "no outbound connector usable"); again != got {
		t.Errorf("second wait: %q, want the last error kept: %q", again, got)
	}
	if fresh := withLastError(&envelope.Recipient{}, "waiting"); fresh != "waiting" {
		t.Errorf("no earlier error: %q", fresh)
	}
}

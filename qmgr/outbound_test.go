package qmgr

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"pfrouter/envelope"
	"pfrouter/relay"
)

// fakeOutbound answers SendOutbound with a scripted reply and records the
// connector and recipients of each call.
type fakeOutbound struct {
	mu    sync.Mutex
	reply func(rcpts []string) ([]relay.RcptResult, error)
	calls []string // "connector:rcpt,rcpt"
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

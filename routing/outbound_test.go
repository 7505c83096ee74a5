package routing_test

import (
	"strings"
	"testing"

	"pfrouter/routing"
)

// outboundEnv: "internet" for every outside domain homed on d1 (cost 1, far
// from rg-a: path 16) and on b1 (cost 5, path 10 from rg-a); "partner" for
// example.net on c1.
func outboundEnv(t *testing.T) *env {
	return build(t, spec{
		Users: "\n  - {name: alice, addresses: [alice@x.example], mailbox_store: a1-mbx, password: pw}",
		Outbound: "\n  - {name: internet, address_spaces: [\"*\"], smarthost: \"mx.isp.example:25\", cost: 1, source_servers: [d1]}" +
			"\n  - {name: backup, address_spaces: [\"*\"], smarthost: \"mx2.isp.example:25\", cost: 5, source_servers: [b1]}" +
			"\n  - {name: partner, address_spaces: [example.net, \"*.example.net\"], smarthost: \"mx.example.net:25\", cost: 50, source_servers: [c1]}",
	})
}

// Issue 10 item 6: an outside address goes to the outbound connector with
// the most specific address space, then the lowest total cost over link
// state; down source servers are skipped; Decide and Route agree.
func TestOutboundDecision(t *testing.T) {
	e := outboundEnv(t)
	check := func(name, at, rcpt string, outcome routing.Outcome, conn, server, route string, cost int) {
		t.Helper()
		d := e.decide(at, rcpt)
		fast := routing.Route(e.dir.Snapshot(), e.table.Graph(), e.params(), routing.Input{At: at, Recipient: rcpt, Now: now, MessageID: "<m1@x.example>"})
		for _, got := range []routing.Decision{d, fast} {
			if got.Outcome != outcome {
				t.Fatalf("%s: outcome %s (%s %s), want %s", name, got.Outcome, got.Code, got.Reason, outcome)
			}
			if outcome != routing.Deliver {
				continue
			}
			if got.Outbound == nil || got.Outbound.Connector != conn || got.Server != server || strings.Join(got.Route, ">") != route || got.Cost != cost {
				t.Errorf("%s: %+v via %v, want %s on %s route %s cost %d", name, got.Outbound, got.Route, conn, server, route, cost)
			}
		}
	}
	check("most specific wins", "a1", "bob@example.net", routing.Deliver, "partner", "c1", "a1>b1>c1", 65)
	check("subdomain", "a1", "bob@mx.example.net", routing.Deliver, "partner", "c1", "a1>b1>c1", 65)
	check("lowest total cost among *", "a1", "bob@example.org", routing.Deliver, "backup", "b1", "a1>b1", 15)
	check("at the source server", "d1", "bob@example.org", routing.Deliver, "internet", "d1", "d1", 1)
	e.serverDown(t, "c1")
	check("source down: fall back to *", "a1", "bob@example.net", routing.Deliver, "backup", "b1", "a1>b1", 15)
	e.serverDown(t, "b1")
	check("everything down: wait", "a1", "bob@example.net", routing.Queue, "", "", "", 0)

	var text strings.Builder
	e.decide("a1", "bob@example.net").WriteText(&text)
	for _, w := range []string{"partner", "no source server reachable", "outcome    queue"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("explanation lacks %q:\n%s", w, text.String())
		}
	}
}

// No connector covers the domain: refused, as before outbound connectors.
func TestOutboundNoConnector(t *testing.T) {
	e := build(t, spec{})
	d := e.decide("a1", "bob@example.org")
	if d.Outcome != routing.NDR || d.Code != "5.7.1" {
		t.Fatalf("%s %s %s, want NDR 5.7.1", d.Outcome, d.Code, d.Reason)
	}
}

// smtpd's RCPT rule: only authenticated users may send to outside
// addresses, and only where a connector covers the domain (no open relay).
func TestCheckSubmission(t *testing.T) {
	e := outboundEnv(t)
	snap := e.dir.Snapshot()
	for _, c := range []struct {
		rcpt, user string
		ok         bool
	}{
		{"bob@example.org", "", false},
		{"bob@example.org", "alice", true},
		{"alice@x.example", "", true},
		{"nobody@x.example", "alice", false},
	} {
		chk := routing.CheckSubmission(snap, routing.Input{Recipient: c.rcpt, SenderUser: c.user, Sender: "alice@x.example"})
		if (chk == nil) != c.ok {
			t.Errorf("CheckSubmission(%s as %q) = %v, want ok=%v", c.rcpt, c.user, chk, c.ok)
		}
		if chk != nil && !strings.HasPrefix(chk.Code, "5.") {
			t.Errorf("refusal %s is not permanent", chk.Code)
		}
	}
	none := build(t, spec{Users: "\n  - {name: alice, addresses: [alice@x.example], mailbox_store: a1-mbx, password: pw}"})
	if chk := routing.CheckSubmission(none.dir.Snapshot(), routing.Input{Recipient: "bob@example.org", SenderUser: "alice"}); chk == nil || chk.Code != "5.7.1" {
		t.Errorf("no outbound connector: %v, want 5.7.1", chk)
	}
}

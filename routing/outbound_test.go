package routing_test

import (
	"strings"
	"testing"

	"pfrouter/linkstate"
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

// Issue 10 item 6: outbound connectors are chosen over link state like any
// connector: a cost change and a down cause at run time (not the config)
// decide, a down connector is skipped for the next by specificity then
// cost, and the explanation names the cause.
func TestOutboundDecisionFollowsLinkState(t *testing.T) {
	e := outboundEnv(t)
	decide := func() routing.Decision {
		t.Helper()
		d := e.decide("a1", "bob@example.net")
		fast := routing.Route(e.dir.Snapshot(), e.table.Graph(), e.params(), routing.Input{At: "a1", Recipient: "bob@example.net", Now: now, MessageID: "<m1@x.example>"})
		if fast.Outcome != d.Outcome || fast.Server != d.Server {
			t.Fatalf("Route %s/%s and Decide %s/%s disagree", fast.Outcome, fast.Server, d.Outcome, d.Server)
		}
		return d
	}
	if d := decide(); d.Outbound.Connector != "partner" {
		t.Fatalf("start: %+v", d.Outbound)
	}
	if _, err := e.table.SetConnectorCause("partner", linkstate.CauseHopHealth, true, "c1", now); err != nil {
		t.Fatal(err)
	}
	d := decide()
	if d.Outbound.Connector != "backup" || d.Server != "b1" {
		t.Fatalf("partner down for hop-health: %+v, want the next (backup, * at cost 15)", d.Outbound)
	}
	var text strings.Builder
	d.WriteText(&text)
	if !strings.Contains(text.String(), "connector is down (hop-health)") {
		t.Errorf("explanation does not give the cause:\n%s", text.String())
	}
	// A runtime cost change: internet (1 + path 16 = 17) vs backup (5 + 10):
	// raise backup to 20 (30 in all) and internet wins.
	if _, err := e.table.SetCost("backup", 20, "op", now); err != nil {
		t.Fatal(err)
	}
	if d := decide(); d.Outbound.Connector != "internet" || d.Server != "d1" {
		t.Fatalf("after backup's cost change: %+v, want internet on d1", d.Outbound)
	}
}

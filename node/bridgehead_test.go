package node

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/routing"
	"pfrouter/store"
)

// bridgeheadOrg is the most common Exchange layout: routing group rg-a has
// the bridgehead a1 and the public folder server a2, rg-b the replica on
// b1. ab1 (a1|b1) is the cheap connector, ab2 (a2|b1) the dear one.
const bridgeheadOrg = `
organization: Bridge
domains: [bridge.example]
secret: bridge-secret-0123456789abcdef0123
routing: {store_min_age: 0, retry_initial: 200ms, retry_max: 1s}
routing_groups: [{name: rg-a}, {name: rg-b}]
sites: [{name: one}]
connectors:
  - {name: ab1, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
  - {name: ab2, between: [rg-a, rg-b], cost: 20, bridgeheads: {rg-a: [a2], rg-b: [b1]}}
servers:
  - name: a1
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}]
  - name: a2
    site: one
    routing_group: rg-a
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
  - name: b1
    site: one
    routing_group: rg-b
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: b1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /F, hierarchy: PF, addresses: [f@bridge.example], replicas: [b1-pub]}
users:
  - {name: alice, addresses: [alice@bridge.example], mailbox_store: a1-mbx, password: alice-pw}
`

// R14 (corrected): a post whose route returns through its bridgehead
// (a1, a2, a1, b1: step 1 to the hierarchy store on a2, step 2 back through
// a1 to the replica in rg-b) is delivered along that route, not refused as
// a loop, and no report goes to the sender.
func TestR14RouteReturnsThroughBridgehead(t *testing.T) {
	c := startOrg(t, bridgeheadOrg)
	a1 := c.Nodes["a1"]
	d := routing.Decide(a1.Directory.Snapshot(), a1.LinkState.Graph(), a1.Params(), routing.Input{At: "a1", Recipient: "f@bridge.example", Now: time.Now()})
	if d.Outcome != routing.Deliver || strings.Join(d.Route, ">") != "a1>a2>a1>b1" {
		t.Fatalf("route decision: %s %v %s", d.Outcome, d.Route, d.Reason)
	}
	id, err := post(t, a1, "alice@bridge.example", "f@bridge.example", "via bridgehead")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["b1"], store.MailboxRef{Store: "b1-pub", Name: "/F"}, id, 20*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "a1>a2>a1>b1" {
		t.Errorf("Received headers show %s, route says a1>a2>a1>b1\n%s", got, b)
	}
	eventually(t, 10*time.Second, "every queue empty", func() (bool, string) {
		return queued(a1)+queued(c.Nodes["a2"])+queued(c.Nodes["b1"]) == 0, ""
	})
	if ndr := findMessage(a1, mbox("a1-mbx", "alice"), "multipart/report"); ndr != nil {
		t.Errorf("the sender got a report for a delivered post:\n%s", ndr)
	}
}

// R14: a real loop still ends in a report. With ab1 down in a1's link
// state only, a1 sends mail for b1 over ab2 through a2, while a2 sends it
// over ab1 through a1: the recipient comes back to a server in the same
// stage for the same destination, and the sender gets a 5.4.6 report
// instead of the message circling until the hop limit.
func TestR14RealLoopEndsInNDR(t *testing.T) {
	c := startOrg(t, bridgeheadOrg)
	a1 := c.Nodes["a1"]
	if _, err := a1.LinkState.SetUp("ab1", false, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	id, err := post(t, a1, "alice@bridge.example", "f@bridge.example", "circles")
	if err != nil {
		t.Fatal(err)
	}
	ndr := waitMessage(t, a1, mbox("a1-mbx", "alice"), id, 20*time.Second)
	if !bytes.Contains(ndr, []byte("Status: 5.4.6")) || !bytes.Contains(ndr, []byte("routing loop detected")) {
		t.Fatalf("not a 5.4.6 loop report:\n%s", ndr)
	}
	if findMessage(c.Nodes["b1"], store.MailboxRef{Store: "b1-pub", Name: "/F"}, id) != nil {
		t.Error("delivered although the servers disagreed into a loop")
	}
}

// Issue 10 item 2, R11: a post just under both the organization's and the
// folder's size limit where it enters crosses a1, a2, a1, b1 although
// every hop adds a Received field and relay metadata (servers get
// smtpd.ServerAllowance over the limit, folders are checked against the
// size at ingress); one byte over the limit is refused to the client.
func TestSizeJustUnderLimitCrossesOrganization(t *testing.T) {
	yaml := strings.Replace(bridgeheadOrg, "sites: [{name: one}]", "sites: [{name: one}]\nlimits: {max_message_size: 4KB}", 1)
	yaml = strings.Replace(yaml, "replicas: [b1-pub]}", "replicas: [b1-pub], max_message_size: 4KB}", 1)
	c := startOrg(t, yaml)
	a1 := c.Nodes["a1"]
	addr := a1.Org.ServerByName("a1").Listen.SMTP
	msgOf := func(id string, size int) []byte {
		head := fmt.Sprintf("From: alice@bridge.example\r\nTo: f@bridge.example\r\nSubject: size\r\nMessage-Id: %s\r\n\r\n", id)
		line := strings.Repeat("x", 78) + "\r\n"
		var b strings.Builder
		b.WriteString(head)
		for b.Len()+len(line) <= size {
			b.WriteString(line)
		}
		b.WriteString(strings.Repeat("y", size-b.Len()))
		return []byte(b.String())
	}
	// 150 bytes under: less than the Received fields the four hops add.
	under := msgOf("<under@test>", 4096-150)
	if err := sendRaw(addr, "alice@bridge.example", []string{"f@bridge.example"}, under); err != nil {
		t.Fatalf("a post under the limit refused at the first server: %v", err)
	}
	b := waitMessage(t, c.Nodes["b1"], store.MailboxRef{Store: "b1-pub", Name: "/F"}, "<under@test>", 20*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "a1>a2>a1>b1" {
		t.Errorf("path %s, want a1>a2>a1>b1", got)
	}
	if ndr := findMessage(a1, mbox("a1-mbx", "alice"), "<under@test>"); ndr != nil {
		t.Errorf("a report for a post under the limit:\n%s", ndr)
	}
	err := sendRaw(addr, "alice@bridge.example", []string{"f@bridge.example"}, msgOf("<over@test>", 4096+100))
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("a post over the limit: %v, want 552", err)
	}
}

// Issue 10 item 2: a 552 from the next hop is an answer about the message,
// not a broken link. b1 runs with a smaller limit than a1 and a2 (its own
// copy of the file), so a post a1 accepted is refused by b1 at MAIL even
// with the servers' allowance: the sender gets a report quoting b1's
// reply, and no server's link state changes (same version, b1 up).
func TestNextHop552IsAReportNotALinkFailure(t *testing.T) {
	yaml := strings.Replace(bridgeheadOrg, "sites: [{name: one}]", "sites: [{name: one}]\nlimits: {max_message_size: %s}", 1)
	for _, s := range []string{"a1", "a2", "b1"} {
		yaml = strings.Replace(yaml, "name: "+s+"\n    site: one\n    routing_group: rg-"+s[:1]+"\n    listen: {smtp: \"127.0.0.1:0\"}",
			"name: "+s+"\n    site: one\n    routing_group: rg-"+s[:1]+"\n    listen: {smtp: \""+freePort(t)+"\"}", 1)
	}
	a := startOrg(t, fmt.Sprintf(yaml, "1MB"), "a1", "a2")
	b := startOrg(t, fmt.Sprintf(yaml, "16KB"), "b1")
	a1, a2 := a.Nodes["a1"], a.Nodes["a2"]
	before := map[string]uint64{"a1": a1.LinkState.Version(), "a2": a2.LinkState.Version(), "b1": b.Nodes["b1"].LinkState.Version()}

	id := "<too-big-for-b1@test>"
	body := fmt.Sprintf("From: alice@bridge.example\r\nTo: f@bridge.example\r\nSubject: big\r\nMessage-Id: %s\r\n\r\n%s\r\n", id,
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", 300<<10/80)) // ~300 KB: over 16KB + the servers' 256 KiB
	if err := sendRaw(a1.Org.ServerByName("a1").Listen.SMTP, "alice@bridge.example", []string{"f@bridge.example"}, []byte(body)); err != nil {
		t.Fatalf("a1 refused a post under its limit: %v", err)
	}
	ndr := waitMessage(t, a1, mbox("a1-mbx", "alice"), id, 30*time.Second)
	if !bytes.Contains(ndr, []byte("Status: 5.3.4")) || !bytes.Contains(ndr, []byte("552")) || !bytes.Contains(ndr, []byte("refused by b1")) {
		t.Fatalf("report does not carry b1's 552 5.3.4:\n%.2000s", ndr)
	}
	after := map[string]uint64{"a1": a1.LinkState.Version(), "a2": a2.LinkState.Version(), "b1": b.Nodes["b1"].LinkState.Version()}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("link-state versions %v -> %v: a reply changed link state", before, after)
	}
	for _, n := range []*Node{a1, a2} {
		if n.LinkState.Graph().ServerDown("b1") {
			t.Errorf("%s marked b1 down for a 552", n.Name)
		}
	}
	if findMessage(b.Nodes["b1"], store.MailboxRef{Store: "b1-pub", Name: "/F"}, id) != nil {
		t.Error("b1 stored a message it refused")
	}
}

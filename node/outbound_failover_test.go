package node

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/internal/smtpsink"
	"pfrouter/linkstate"
)

// failoverOrg is testOrg with admin and gossip everywhere and two outbound
// connectors for every outside domain: "cheap" (cost 1) homed on s4, whose
// smarthost is deadAddr, and "backup" (cost 30) homed on s1, whose
// smarthost is backupAddr. From s1, cheap costs 1 + 10 (s1>s2>s3>s4) and
// backup 30: cheap is chosen while it is up.
func failoverOrg(t *testing.T, deadAddr, backupAddr string) string {
	t.Helper()
	ob := fmt.Sprintf("outbound:\n"+
		"  - {name: cheap, address_spaces: [\"*\"], smarthost: %q, cost: 1, tls: opportunistic, source_servers: [s4]}\n"+
		"  - {name: backup, address_spaces: [\"*\"], smarthost: %q, cost: 30, tls: opportunistic, source_servers: [s1]}\n"+
		"servers:\n", deadAddr, backupAddr)
	y := strings.Replace(opsOrg(testOrg), "servers:\n", ob, 1)
	if !strings.Contains(y, "name: cheap") {
		t.Fatal("test setup: org edit failed")
	}
	return y
}

// Issue 10 item 6: outbound connectors are chosen by address space and cost
// over link state like any connector. The cheap connector's smarthost is
// stopped: after failure_threshold (2) connection failures its source
// server s4 gives it the hop-health cause, gossip takes that to every
// server, the queued message is routed again to backup and reaches the
// second smarthost. `admin linkstate` lists both connectors with their
// causes; a cost change made on one server is seen on every other (R9,
// R13b, O1).
func TestOutboundFailoverOverLinkState(t *testing.T) {
	t.Parallel()
	// The second smarthost is Postfix's smtp-sink when installed (as in
	// CI), else the go-smtp sink.
	backupAddr, waitBackup := "", func(needle string) string { return "" }
	if bin, err := exec.LookPath("smtp-sink"); err == nil {
		dump := t.TempDir()
		backupAddr = startSmtpSink(t, bin, dump)
		waitBackup = func(needle string) string { return waitDump(t, dump, needle, 60*time.Second) }
	} else {
		sink := smtpsink.Start(t, smtpsink.Options{})
		backupAddr = sink.Addr
		waitBackup = func(needle string) string {
			m := sink.Wait(t, needle, 60*time.Second)
			return "RCPT " + strings.Join(m.To, ",") + "\n" + string(m.Data)
		}
	}
	// Nothing listens at the cheap smarthost's address: it is stopped.
	c, _ := startOrgFile(t, failoverOrg(t, freePort(t), backupAddr))
	s1 := c.Nodes["s1"]
	ctx := context.Background()

	d, err := s1.Operator().Route(ctx, "s1", "bob@example.net", time.Now())
	if err != nil || d.Outbound == nil || d.Outbound.Connector != "cheap" || d.Server != "s4" {
		t.Fatalf("before: route %+v (outbound %+v), err %v; want cheap on s4", d, d.Outbound, err)
	}

	alice := submit(t, s1.Org.ServerByName("s1").Listen.SMTP, "alice", "alice-pw")
	msg := "From: alice@test.example\r\nTo: bob@example.net\r\nMessage-Id: <failover@test>\r\nSubject: out\r\n\r\nhi\r\n"
	if err := alice.SendMail("alice@test.example", []string{"bob@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if got := waitBackup("failover@test"); !strings.Contains(got, "bob@example.net") {
		t.Errorf("the backup smarthost did not get it for bob@example.net:\n%s", got)
	}

	// Every server sees cheap down for hop-health (set by s4, its source)
	// and backup up.
	waitConverged(t, c, "cheap down for hop-health everywhere", func(ls admin.LinkState) bool {
		ch, bk := connectorOf(ls, "cheap"), connectorOf(ls, "backup")
		return ch.Outbound && !ch.Up && slices.Equal(ch.Causes, linkstate.Causes{linkstate.CauseHopHealth}) && bk.Outbound && bk.Up
	})
	if d, _ := s1.Operator().Route(ctx, "s1", "bob@example.net", time.Now()); d.Outbound == nil || d.Outbound.Connector != "backup" {
		t.Errorf("after: route %+v, want backup", d.Outbound)
	}

	// The operator's view: s2's admin API (what `pfrouter admin linkstate`
	// prints; admin's CLI test checks the table) lists both with causes.
	ls, err := adminClient(t, c.Nodes["s2"]).LinkState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ch := connectorOf(ls, "cheap"); !slices.Equal(ch.Sources, []string{"s4"}) || !slices.Equal(ch.AddressSpaces, []string{"*"}) || ch.Cost != 1 {
		t.Errorf("s2 lists cheap as %+v", ch)
	}

	// A cost change on s5 reaches every server, and maintenance is a cause
	// of its own beside hop-health.
	if _, err := adminClient(t, c.Nodes["s5"]).SetConnectorCost(ctx, "backup", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := adminClient(t, c.Nodes["s3"]).SetConnectorState(ctx, "cheap", false); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, "backup cost 7 and cheap in maintenance everywhere", func(ls admin.LinkState) bool {
		ch := connectorOf(ls, "cheap")
		return connectorOf(ls, "backup").Cost == 7 && ch.Causes.Has(linkstate.CauseMaintenance) && ch.Causes.Has(linkstate.CauseHopHealth)
	})
}

package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/config"
	"pfrouter/tracking"
)

// procOrg: rg-a {s1}, rg-b {s2}, rg-c {s3}; ab, bc and ac all cost 10.
// /F's only replica is on s3: from s1 the cheapest path is ac (s1>s3);
// with ac at 50 it is ab+bc (s1>s2>s3).
const procOrg = `
organization: Proc
domains: [proc.example]
secret: proc-secret-0123456789abcdef0123456789
routing: {store_min_age: 0, retry_initial: 200ms, retry_max: 1s}
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [s1], rg-b: [s2]}}
  - {name: bc, between: [rg-b, rg-c], cost: 10, bridgeheads: {rg-b: [s2], rg-c: [s3]}}
  - {name: ac, between: [rg-a, rg-c], cost: 10, bridgeheads: {rg-a: [s1], rg-c: [s3]}}
servers:
  - {name: s1, site: one, routing_group: rg-a, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: one, routing_group: rg-b, listen: {smtp: "%s", admin: "%s", gossip: "%s"}}
  - {name: s3, site: one, routing_group: rg-c, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: s3-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /F, hierarchy: PF, addresses: [f@proc.example], replicas: [s3-pub]}
`

// Issue item 2: three servers in three processes. A cost changed with
// `pfrouter admin` on one reaches the others with the same version, and
// a post routed by another server follows the new path (R9, O1).
func TestOpsThreeProcessesGossipR9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the pfrouter binary")
	}
	bin := pfrouterBinary(t) // crash_test.go: built once per test run
	var addrs []any
	for range 3 {
		g, err := reserveGossipAddr("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, freePort(t), freePort(t), g)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "org.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(procOrg, addrs...)), 0o600); err != nil {
		t.Fatal(err)
	}
	org, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	type proc struct {
		name string
		cmd  *exec.Cmd
		logs *bytes.Buffer
	}
	var procs []proc
	// Stop all three at once: a server's SMTP shutdown waits for its
	// peers' idle relay sessions, which end when the peers stop too.
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", p.name, p.logs.String())
			}
		}
	})
	for _, s := range []string{"s1", "s2", "s3"} {
		cmd := exec.Command(bin, "serve", "--config", cfg, "--server", s, "--data-dir", data, "--log-level", "warn")
		logs := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, proc{s, cmd, logs})
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"admin", "--config", cfg, "--data-dir", data}, args...)...).CombinedOutput()
		return string(out), err
	}
	linkState := func(server string) (admin.LinkState, error) {
		var ls admin.LinkState
		out, err := cli("--server", server, "linkstate", "--json")
		if err != nil {
			return ls, fmt.Errorf("%v: %s", err, out)
		}
		return ls, json.Unmarshal([]byte(out), &ls)
	}
	// Wait for the servers, then for gossip to have formed one cluster.
	eventually(t, 15*time.Second, "three servers answering", func() (bool, string) {
		for _, s := range []string{"s1", "s2", "s3"} {
			if _, err := linkState(s); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
	var eps []tracking.Endpoint
	for _, s := range []string{"s1", "s2", "s3"} {
		srv := org.ServerByName(s)
		tok, err := admin.ResolveToken(org, org.DataDir(srv, data))
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, tracking.Endpoint{Server: s, URL: "http://" + srv.Listen.Admin, Token: tok})
	}
	// pathOf posts at s1 and returns the servers that received it, in time
	// order, once s3 delivered it. Receipts are causally ordered (a server
	// relays only what it has accepted); a sender's "relayed" is not: the
	// next hop may deliver before the sender records the relay.
	pathOf := func(subject string) string {
		t.Helper()
		msgID := fmt.Sprintf("<%s.%d@test>", subject, time.Now().UnixNano())
		body := fmt.Sprintf("From: a@proc.example\r\nTo: f@proc.example\r\nSubject: %s\r\nMessage-Id: %s\r\n\r\nbody\r\n", subject, msgID)
		eventually(t, 10*time.Second, "post accepted by s1", func() (bool, string) {
			err := sendRaw(org.ServerByName("s1").Listen.SMTP, "a@proc.example", []string{"f@proc.example"}, []byte(body))
			return err == nil, errString(err)
		})
		var path string
		eventually(t, 15*time.Second, subject+" delivered on s3", func() (bool, string) {
			res := tracking.Collect(context.Background(), eps, msgID)
			var hops []string
			delivered := false
			for _, e := range res.Events {
				switch e.Kind {
				case "received":
					hops = append(hops, e.Server)
				case "delivered":
					delivered = delivered || e.Server == "s3"
				}
			}
			path = strings.Join(hops, ">")
			return delivered, path
		})
		return path
	}
	if got := pathOf("before"); got != "s1>s3" {
		t.Fatalf("before the change the post went %s, want s1>s3 over ac", got)
	}
	if out, err := cli("--server", "s2", "connector", "set-cost", "ac", "50"); err != nil {
		t.Fatalf("pfrouter admin connector set-cost: %v\n%s", err, out)
	}
	eventually(t, 15*time.Second, "every process shows ac at 50 with one version", func() (bool, string) {
		var versions []uint64
		for _, s := range []string{"s1", "s2", "s3"} {
			ls, err := linkState(s)
			if err != nil {
				return false, err.Error()
			}
			if c := connectorOf(ls, "ac"); c.Cost != 50 {
				return false, fmt.Sprintf("%s: ac cost %d", s, c.Cost)
			}
			versions = append(versions, ls.Version)
		}
		return versions[0] > 0 && versions[0] == versions[1] && versions[1] == versions[2], fmt.Sprint("versions ", versions)
	})
	if got := pathOf("after"); got != "s1>s2>s3" {
		t.Errorf("after ac went to 50 the post went %s, want s1>s2>s3 over ab+bc", got)
	}
	// Exit codes scripts rely on: refused is 1, usage 2.
	if _, err := cli("--server", "s1", "connector", "set-cost", "ac", "500"); exitCode(err) != admin.ExitRefused {
		t.Errorf("cost 500: exit %d, want %d", exitCode(err), admin.ExitRefused)
	}
	if _, err := cli("--server", "nosuch", "linkstate"); exitCode(err) != admin.ExitUsage {
		t.Errorf("unknown server: exit %d, want %d", exitCode(err), admin.ExitUsage)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

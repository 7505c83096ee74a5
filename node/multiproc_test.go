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
	"sync"
	"syscall"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/routing"
	"pfrouter/store"
)

// multiOrg is the organization of the multi-process test, one process per
// server. rg-a has the bridgehead a1 and the public folder server a2; /F's
// replicas are b1-pub in rg-b (cheaper) and c1-pub in rg-c (the
// alternate), both behind a1: the route from a1 is a1, a2, a1, b1 (R14).
// alice's mailbox on a1 receives any report. Servers share secret_file.
const multiOrg = `
organization: Multi
domains: [multi.example]
secret_file: secret
routing: {store_min_age: 0, retry_initial: 200ms, retry_max: 1s, probe_interval: 500ms, hold_down: 500ms, failure_threshold: 2}
routing_groups: [{name: rg-a}, {name: rg-b}, {name: rg-c}]
sites: [{name: one}]
connectors:
  - {name: ab, between: [rg-a, rg-b], cost: 10, bridgeheads: {rg-a: [a1], rg-b: [b1]}}
  - {name: ac, between: [rg-a, rg-c], cost: 20, bridgeheads: {rg-a: [a1], rg-c: [c1]}}
servers:
  - {name: a1, site: one, routing_group: rg-a, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: a1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}]}
  - {name: a2, site: one, routing_group: rg-a, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: a2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: b1, site: one, routing_group: rg-b, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: b1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: c1, site: one, routing_group: rg-c, listen: {smtp: "%s", admin: "%s", gossip: "%s"}, stores: [{name: c1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /F, hierarchy: PF, addresses: [f@multi.example], replicas: [b1-pub, c1-pub]}
users:
  - {name: alice, addresses: [alice@multi.example], mailbox_store: a1-mbx, password: alice-pw-0123}
`

var multiServers = []string{"a1", "a2", "b1", "c1"}

// orgProcs runs each server of an organization file as its own
// `pfrouter serve --server NAME` process.
type orgProcs struct {
	t     *testing.T
	bin   string
	cfg   string
	data  string
	mu    sync.Mutex
	procs map[string]*exec.Cmd
	logs  map[string]*logBuf
}

func (o *orgProcs) start(name string) {
	o.t.Helper()
	cmd := exec.Command(o.bin, "serve", "--config", o.cfg, "--server", name, "--data-dir", o.data, "--log-level", "warn")
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.logs[name] == nil {
		o.logs[name] = &logBuf{}
	}
	fmt.Fprintf(o.logs[name], "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = o.logs[name], o.logs[name]
	if err := cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	o.procs[name] = cmd
}

func (o *orgProcs) cmd(name string) *exec.Cmd {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.procs[name]
}

// cli runs `pfrouter admin` against one server.
func (o *orgProcs) cli(server string, args ...string) (string, error) {
	all := append([]string{"admin", "--config", o.cfg, "--data-dir", o.data, "--server", server, "--timeout", "5s"}, args...)
	out, err := exec.Command(o.bin, all...).CombinedOutput()
	return string(out), err
}

func (o *orgProcs) linkState(server string) (admin.LinkState, error) {
	var ls admin.LinkState
	out, err := o.cli(server, "linkstate", "--json")
	if err != nil {
		return ls, fmt.Errorf("%s: %v: %s", server, err, out)
	}
	return ls, json.Unmarshal([]byte(out), &ls)
}

func (o *orgProcs) queueLen(server string) (int, error) {
	out, err := o.cli(server, "queue", "list", "--json")
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", server, err, out)
	}
	var items []admin.QueueItem
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		return 0, fmt.Errorf("%s: %v: %s", server, err, out)
	}
	return len(items), nil
}

// stopAll sends SIGTERM to every running process at once (a server's SMTP
// shutdown waits briefly for its peers' pooled sessions) and returns each
// one's exit error and how long it took.
func (o *orgProcs) stopAll(within time.Duration) map[string]error {
	o.mu.Lock()
	procs := map[string]*exec.Cmd{}
	for n, c := range o.procs {
		if c.ProcessState == nil {
			procs[n] = c
		}
	}
	o.mu.Unlock()
	for _, c := range procs {
		c.Process.Signal(syscall.SIGTERM)
	}
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n, c := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(within):
				c.Process.Kill()
				<-done
				err = fmt.Errorf("did not exit within %s of SIGTERM", within)
			}
			mu.Lock()
			errs[n] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

// Issue 10: the organization as separate `pfrouter serve --server`
// processes on loopback, sharing a secret_file, with a route that returns
// through its bridgehead (R14): delivery where `pfrouter route` says; a
// cost change reaches every process by gossip (O1); SIGKILL of the server
// holding the chosen replica while posts keep arriving, then its restart:
// every acknowledged post is delivered exactly once, in that replica or
// the alternate, none bounced (S2, R10, R13b); SIGTERM ends each process
// with exit 0 within 10 s.
func TestMultiProcessOrganization(t *testing.T) {
	bin := pfrouterBinary(t)
	dir := t.TempDir()
	secret := "multi-process-secret-0123456789abcdef-xyz" // > 32 characters
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var addrs []any
	for range multiServers {
		g, err := reserveGossipAddr("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, freePort(t), freePort(t), g)
	}
	cfg := filepath.Join(dir, "org.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(multiOrg, addrs...)), 0o600); err != nil {
		t.Fatal(err)
	}
	smtpOf := map[string]string{}
	for i, s := range multiServers {
		smtpOf[s] = addrs[3*i].(string)
	}
	o := &orgProcs{t: t, bin: bin, cfg: cfg, data: filepath.Join(dir, "data"), procs: map[string]*exec.Cmd{}, logs: map[string]*logBuf{}}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			o.stopAll(10 * time.Second)
		}
		if t.Failed() {
			for _, s := range multiServers {
				if l := o.logs[s]; l != nil {
					t.Logf("%s output:\n%s", s, l.String())
				}
			}
		}
	})
	for _, s := range multiServers {
		o.start(s)
	}
	eventually(t, 30*time.Second, "four servers answering and one gossip cluster", func() (bool, string) {
		for _, s := range multiServers {
			ls, err := o.linkState(s)
			if err != nil {
				return false, err.Error()
			}
			for _, srv := range ls.Servers {
				if srv.Down {
					return false, fmt.Sprintf("%s sees %s down %v", s, srv.Name, srv.Causes)
				}
			}
		}
		return true, ""
	})

	// Delivery where `pfrouter route` says.
	out, err := exec.Command(bin, "route", "--config", cfg, "--at", "a1", "--to", "f@multi.example", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("pfrouter route: %v\n%s", err, out)
	}
	var d routing.Decision
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	if d.Outcome != routing.Deliver || strings.Join(d.Route, ">") != "a1>a2>a1>b1" || d.Store != "b1-pub" {
		t.Fatalf("pfrouter route: %s %v %s, want a1>a2>a1>b1 into b1-pub", d.Outcome, d.Route, d.Store)
	}
	post := func(id string) error {
		body := fmt.Sprintf("From: alice@multi.example\r\nTo: f@multi.example\r\nSubject: %s\r\nMessage-Id: %s\r\n\r\nbody of %s\r\n", id, id, id)
		return sendRaw(smtpOf["a1"], "alice@multi.example", []string{"f@multi.example"}, []byte(body))
	}
	emptyQueues := func(what string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() (bool, string) {
			for _, s := range multiServers {
				n, err := o.queueLen(s)
				if err != nil {
					return false, err.Error()
				}
				if n > 0 {
					return false, fmt.Sprintf("%s holds %d", s, n)
				}
			}
			return true, ""
		})
	}
	if err := post("<first@multi>"); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{"<first@multi>": true}
	emptyQueues("the first post delivered")

	// A cost change on a2 reaches every process.
	if out, err := o.cli("a2", "connector", "set-cost", "ab", "15"); err != nil {
		t.Fatalf("set-cost: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "every process shows ab at cost 15", func() (bool, string) {
		for _, s := range multiServers {
			ls, err := o.linkState(s)
			if err != nil {
				return false, err.Error()
			}
			if c := connectorOf(ls, "ab"); c.Cost != 15 {
				return false, fmt.Sprintf("%s: ab cost %d", s, c.Cost)
			}
		}
		return true, ""
	})

	// Posts keep arriving while b1, holding the chosen replica, is killed
	// and later restarted.
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(30 * time.Millisecond):
				}
				id := fmt.Sprintf("<p%d-%d@multi>", s, i)
				if post(id) == nil {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually(t, 30*time.Second, "posts acknowledged before the kill", func() (bool, string) { return count() >= 20, fmt.Sprint(count()) })
	b1 := o.cmd("b1")
	b1.Process.Signal(syscall.SIGKILL)
	b1.Wait()
	// Until a2 sees b1 down its step 2 still picks b1-pub: those posts
	// wait at the bridgehead; after that they go to the alternate.
	eventually(t, 30*time.Second, "a2 routes around the killed b1", func() (bool, string) {
		ls, err := o.linkState("a2")
		if err != nil {
			return false, err.Error()
		}
		for _, s := range ls.Servers {
			if s.Name == "b1" {
				return s.Down, fmt.Sprint("b1 causes ", s.Causes)
			}
		}
		return false, "no b1"
	})
	atDown := count()
	eventually(t, 30*time.Second, "posts acknowledged while b1 is down", func() (bool, string) { return count() >= atDown+20, fmt.Sprint(count() - atDown) })
	o.start("b1")
	eventually(t, 30*time.Second, "b1 up again everywhere", func() (bool, string) {
		for _, s := range multiServers {
			ls, err := o.linkState(s)
			if err != nil {
				return false, err.Error()
			}
			for _, srv := range ls.Servers {
				if srv.Name == "b1" && srv.Down {
					return false, fmt.Sprintf("%s sees b1 down %v", s, srv.Causes)
				}
			}
		}
		return true, ""
	})
	atUp := count()
	eventually(t, 30*time.Second, "posts acknowledged after the restart", func() (bool, string) { return count() >= atUp+10, fmt.Sprint(count() - atUp) })
	close(stop)
	wg.Wait()
	emptyQueues("every queue drained")

	errs := o.stopAll(10 * time.Second)
	stopped = true
	for _, s := range multiServers {
		if errs[s] != nil {
			t.Errorf("%s after SIGTERM: %v, want exit 0 within 10 s", s, errs[s])
		}
	}

	// Every acknowledged post is in b1-pub or c1-pub exactly once, and
	// alice got no report.
	seen := map[string]int{}
	where := map[string]int{}
	read := func(server string, ref store.MailboxRef, fn func(body []byte)) {
		st, err := store.Open(filepath.Join(o.data, server, "store"), testLogger())
		if err != nil {
			t.Fatalf("open %s's store: %v", server, err)
		}
		defer st.Close()
		msgs, err := st.Messages(context.Background(), ref)
		if err != nil {
			return // no such mailbox: nothing delivered there
		}
		for _, m := range msgs {
			b, err := st.Body(context.Background(), ref, m.UID)
			if err != nil {
				t.Fatal(err)
			}
			fn(b)
		}
	}
	for _, s := range []string{"b1", "c1"} {
		read(s, store.MailboxRef{Store: s + "-pub", Name: "/F"}, func(b []byte) {
			i := bytes.Index(b, []byte("Message-Id: <"))
			if i < 0 {
				t.Errorf("%s: message without our Message-Id", s)
				return
			}
			id := string(b[i+len("Message-Id: ") : i+bytes.IndexByte(b[i:], '>')+1])
			seen[id]++
			where[s]++
		})
	}
	read("a1", store.MailboxRef{Store: "a1-mbx", User: "alice", Name: "INBOX"}, func(b []byte) {
		t.Errorf("alice got a report:\n%s", b)
	})
	missing := 0
	for id := range acked {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("%s delivered %d times", id, seen[id])
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged posts not delivered", missing, len(acked))
	}
	if where["c1"] == 0 {
		t.Errorf("no post reached the alternate replica while b1 was down (b1 %d, c1 %d)", where["b1"], where["c1"])
	}
	t.Logf("acknowledged %d posts; delivered %d into b1-pub, %d into c1-pub", len(acked), where["b1"], where["c1"])
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/config"
	"pfrouter/gossip"
	"pfrouter/linkstate"
	"pfrouter/store"
)

// opsOrg gives every server of an org an admin API and a gossip member,
// both on port 0.
func opsOrg(yaml string) string {
	return strings.ReplaceAll(yaml, `listen: {smtp: "127.0.0.1:0"}`,
		`listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0", gossip: "127.0.0.1:0"}`)
}

// adminClient talks to a node's real admin API over its socket.
func adminClient(t *testing.T, n *Node) *admin.Client {
	t.Helper()
	tok, err := admin.ResolveToken(n.Org, n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return &admin.Client{BaseURL: "http://" + n.Org.ServerByName(n.Name).Listen.Admin, Token: tok, By: "test"}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last state: %s", what, within, last)
}

func connectorOf(ls admin.LinkState, name string) linkstate.Connector {
	for _, c := range ls.Connectors {
		if c.Name == name {
			return c
		}
	}
	return linkstate.Connector{}
}

// waitConverged waits until every server's admin API shows the same
// link-state version and cond holds on each.
func waitConverged(t *testing.T, c *Cluster, what string, cond func(admin.LinkState) bool) uint64 {
	t.Helper()
	ctx := context.Background()
	var version uint64
	eventually(t, 30*time.Second, what, func() (bool, string) {
		var versions []uint64
		for _, name := range c.Order {
			ls, err := adminClient(t, c.Nodes[name]).LinkState(ctx)
			if err != nil {
				return false, err.Error()
			}
			if !cond(ls) {
				return false, name + " does not show it yet"
			}
			versions = append(versions, ls.Version)
		}
		for _, v := range versions[1:] {
			if v != versions[0] {
				return false, "versions differ"
			}
		}
		version = versions[0]
		return versions[0] > 0, "version 0"
	})
	return version
}

// O1, R9: a cost changed through one server's admin API reaches every
// server with the same version, and the next post routed by another server
// follows the new cheapest path.
func TestOpsConnectorCostSpreadsAndReroutesR9(t *testing.T) {
	t.Parallel()
	c := startOrg(t, opsOrg(testOrg))
	ctx := context.Background()
	// Before: s1 reaches s4-pub over ab (10): s1>s2>s3>s4.
	got, err := adminClient(t, c.Nodes["s5"]).SetConnectorCost(ctx, "ab", 50)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cost != 50 || got.ChangedBy == "" {
		t.Fatalf("reply: %+v", got)
	}
	waitConverged(t, c, "ab cost 50 everywhere", func(ls admin.LinkState) bool { return connectorOf(ls, "ab").Cost == 50 })
	for _, name := range c.Order {
		if cn, _ := c.Nodes[name].LinkState.Connector("ab"); !strings.HasPrefix(cn.ChangedBy, "test via s5") {
			t.Errorf("%s: changed_by %q, want the client and origin", name, cn.ChangedBy)
		}
	}
	s1 := c.Nodes["s1"]
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "after cost change")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s4" {
		t.Errorf("after ab cost 50 the post went %s, want s1>s4 over ab2 (20)", got)
	}
}

// R6, O1: a store added at runtime has the same created time everywhere
// and is skipped while young; lowering store_min_age makes the next
// decision pick it, raising it again skips it again.
func TestOpsStoreMinAgeR6(t *testing.T) {
	t.Parallel()
	c := startOrg(t, opsOrg(testOrg))
	ctx := context.Background()
	if err := adminClient(t, c.Nodes["s1"]).AddStore(ctx, admin.StoreRequest{Server: "s2", Name: "s2-new", Kind: "public", Hierarchy: "PF"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "s2-new known everywhere with one created time", func() (bool, string) {
		var created time.Time
		for _, name := range c.Order {
			st := c.Nodes[name].Directory.Snapshot().Store("s2-new")
			if st == nil {
				return false, name + " lacks s2-new"
			}
			if created.IsZero() {
				created = st.Created
			} else if !st.Created.Equal(created) {
				return false, name + " has another created time"
			}
		}
		return true, ""
	})
	step1 := func(via string) string {
		t.Helper()
		d, err := adminClient(t, c.Nodes[via]).Route(ctx, "both@test.example", "s2", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Step1 == nil {
			t.Fatalf("no step 1 in %+v", d)
		}
		return d.Step1.Store
	}
	if got := step1("s3"); got != "s1-pub" {
		t.Fatalf("young s2-new not skipped at s2 (R6): step 1 chose %s", got)
	}
	setAge := func(via string, d time.Duration) {
		t.Helper()
		if _, err := adminClient(t, c.Nodes[via]).SetStoreMinAge(ctx, d); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "store_min_age "+d.String()+" everywhere", func() (bool, string) {
			for _, name := range c.Order {
				if got := c.Nodes[name].Params().MinAge; got != d {
					return false, name + " has " + got.String()
				}
			}
			return true, ""
		})
	}
	setAge("s4", time.Millisecond)
	time.Sleep(2 * time.Millisecond) // s2-new must be older than 1ms: not an assertion
	if got := step1("s3"); got != "s2-new" {
		t.Errorf("store_min_age 1ms: step 1 at s2 chose %s, want the now-eligible local s2-new (R3, R6)", got)
	}
	if got := step1("s2"); got != "s2-new" {
		t.Errorf("s2's own decision: %s", got)
	}
	setAge("s5", 48*time.Hour)
	if got := step1("s1"); got != "s1-pub" {
		t.Errorf("store_min_age back to 48h: step 1 chose %s, want s1-pub", got)
	}
}

// R10: a post waiting because its only path is down goes out
// as soon as a connector comes up through the admin API; retry_initial is
// an hour, so only the immediate reroute can deliver it in time.
func TestOpsConnectorUpReroutesQueuedAtOnceR10(t *testing.T) {
	t.Parallel()
	yaml := strings.Replace(testOrg, "retry_initial: 200ms, retry_max: 1s", "retry_initial: 1h, retry_max: 1h", 1)
	c := startOrg(t, opsOrg(yaml))
	ctx := context.Background()
	s1 := c.Nodes["s1"]
	cl := adminClient(t, s1)
	for _, cn := range []string{"ab", "ab2"} {
		if _, err := cl.SetConnectorState(ctx, cn, false); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c, "ab and ab2 down everywhere", func(ls admin.LinkState) bool {
		return !connectorOf(ls, "ab").Up && !connectorOf(ls, "ab2").Up
	})
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "waiting for a path")
	if err != nil {
		t.Fatal(err)
	}
	var qid string
	eventually(t, 10*time.Second, "post waiting in s1's queue", func() (bool, string) {
		items, err := cl.QueueList(ctx)
		if err != nil || len(items) != 1 || len(items[0].Recipients) != 1 {
			return false, "queue list: " + errString(err)
		}
		qid = items[0].ID
		r := items[0].Recipients[0]
		return r.State == "waiting" && r.NextAttempt.After(time.Now().Add(30*time.Minute)), r.State + " " + r.Reason
	})
	it, err := cl.QueueShow(ctx, qid)
	if err != nil || it.MessageID != id {
		t.Fatalf("queue show %s: %+v %v", qid, it, err)
	}
	if _, err := adminClient(t, c.Nodes["s3"]).SetConnectorState(ctx, "ab2", true); err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s4" {
		t.Errorf("path after ab2 came up: %s", got)
	}
	eventually(t, 5*time.Second, "s1's queue empty", func() (bool, string) { return queued(s1) == 0, "" })
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// startOrgFile runs an org read from a file, so Reload has a file to read.
func startOrgFile(t *testing.T, yaml string) (*Cluster, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "org.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	org, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartAll(context.Background(), org, nil, Options{BaseDir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, path
}

// O5: a reload with a bad config is refused with the field-level error and
// the old config keeps running; a good one is applied, with the runtime
// changes made before it still on top.
func TestOpsReloadO5(t *testing.T) {
	t.Parallel()
	yaml := opsOrg(testOrg)
	c, path := startOrgFile(t, yaml)
	ctx := context.Background()
	s1 := c.Nodes["s1"]
	cl := adminClient(t, s1)
	if _, err := cl.SetConnectorCost(ctx, "ab2", 15); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(yaml, "{name: ab, between: [rg-a, rg-b], cost: 10,", "{name: ab, between: [rg-a, rg-b], cost: 500,", 1)
	if bad == yaml {
		t.Fatal("test setup: connector ab not found in the org")
	}
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err := cl.Reload(ctx)
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "connectors[0].cost") {
		t.Fatalf("bad config: want 400 naming connectors[0].cost, got %v", err)
	}
	if cn, _ := s1.LinkState.Connector("ab"); cn.Cost != 10 {
		t.Fatalf("refused config partly applied: ab cost %d", cn.Cost)
	}
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "still running")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)

	good := strings.Replace(yaml, "{name: ab, between: [rg-a, rg-b], cost: 10,", "{name: ab, between: [rg-a, rg-b], cost: 40,", 1)
	good = strings.Replace(good, "\nusers:", "\n  - {path: /Fresh, hierarchy: PF, addresses: [fresh@test.example], replicas: [s3-pub]}\nusers:", 1)
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cl.Reload(ctx); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	// Each server reads the config itself: reload the others as SIGHUP
	// does for every server of a process.
	if err := c.Reload(ctx); err != nil {
		t.Fatalf("cluster reload: %v", err)
	}
	ls, err := cl.LinkState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := connectorOf(ls, "ab").Cost; got != 40 {
		t.Errorf("ab cost after reload %d, want the new config's 40", got)
	}
	if got := connectorOf(ls, "ab2").Cost; got != 15 {
		t.Errorf("ab2 cost after reload %d, want the runtime change 15 kept on top", got)
	}
	d, err := cl.Route(ctx, "fresh@test.example", "", time.Time{})
	if err != nil || d.Store != "s3-pub" {
		t.Fatalf("new folder after reload: %+v %v", d, err)
	}
	id, err = post(t, s1, "alice@test.example", "fresh@test.example", "after reload")
	if err != nil {
		t.Fatal(err)
	}
	b := waitMessage(t, c.Nodes["s3"], store.MailboxRef{Store: "s3-pub", Name: "/Fresh"}, id, 10*time.Second)
	if got := strings.Join(receivedBy(b), ">"); got != "s1>s4>s3" {
		t.Errorf("after reload (ab 40, ab2 15) the post went %s, want s1>s4>s3", got)
	}
}

// Issue item 1: no token is 401; a bad field is 400 naming it.
func TestOpsAdminAuthAndFieldErrors(t *testing.T) {
	t.Parallel()
	c := startOrg(t, opsOrg(testOrg))
	ctx := context.Background()
	s1 := c.Nodes["s1"]
	cl := adminClient(t, s1)
	resp, err := http.Get(cl.BaseURL + "/v1/linkstate")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	wrong := *cl
	wrong.Token = "nope"
	if _, err := wrong.LinkState(ctx); !isStatus(err, 401, "") {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := cl.SetConnectorCost(ctx, "ab", 0); !isStatus(err, 400, "cost") {
		t.Errorf("cost 0: %v", err)
	}
	if err := cl.AddStore(ctx, admin.StoreRequest{Server: "nosuch", Name: "x", Hierarchy: "PF"}); !isStatus(err, 400, "server") {
		t.Errorf("unknown server: %v", err)
	}
	if err := cl.AddReplica(ctx, admin.ReplicaRequest{Hierarchy: "PF", Folder: "/Nope", Store: "s1-pub"}); !isStatus(err, 400, "folder") {
		t.Errorf("unknown folder: %v", err)
	}
	if _, err := cl.SetConnectorState(ctx, "nosuch", true); !isStatus(err, 404, "") {
		t.Errorf("unknown connector: %v", err)
	}
	if err := cl.QueueDelete(ctx, "nosuch"); !isStatus(err, 404, "") {
		t.Errorf("unknown queue id: %v", err)
	}
	if _, err := cl.Route(ctx, "remote@test.example", "nosuch", time.Time{}); !isStatus(err, 400, "at") {
		t.Errorf("route at unknown server: %v", err)
	}
	if err := cl.Reload(ctx); !isStatus(err, 400, "") {
		t.Errorf("reload of a config not read from a file: %v", err)
	}
}

func isStatus(err error, status int, field string) bool {
	var ae *admin.APIError
	return errors.As(err, &ae) && ae.Status == status && ae.Field == field
}

// R13b: a record whose origin is not a server of the organization is
// ignored. Without listen.gossip, changes still apply locally.
func TestOpsApplierIgnoresForeignOriginR13b(t *testing.T) {
	t.Parallel()
	c := startOrg(t, testOrg) // no gossip, no admin listener
	s1 := c.Nodes["s1"]
	raw, _ := json.Marshal(map[string]any{"cost": 99, "up": false, "by": "evil"})
	if err := s1.changes.Apply(gossip.Record{Kind: gossip.KindConnector, Key: "ab", Origin: "intruder", Version: 7, At: time.Now(), Value: raw}); err != nil {
		t.Fatal(err)
	}
	if cn, _ := s1.LinkState.Connector("ab"); cn.Cost != 10 || !cn.Up {
		t.Fatalf("record from outside the organization applied: %+v", cn)
	}
	op := s1.Operator()
	if err := op.SetConnectorCost(context.Background(), "ab", 33, "test"); err != nil {
		t.Fatal(err)
	}
	ls := op.LinkState()
	if cn := connectorOf(ls, "ab"); cn.Cost != 33 || ls.Version != 1 {
		t.Fatalf("local change without gossip: %+v version %d", cn, ls.Version)
	}
}

package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/examples"
	"pfrouter/linkstate"
)

func TestClientAgainstServer(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(NewHandler(f, tok, nil, nil))
	defer srv.Close()
	ctx := context.Background()
	cl := &Client{BaseURL: srv.URL, Token: tok, By: "ops-team"}

	if d, err := cl.StoreMinAge(ctx); err != nil || d != 48*time.Hour {
		t.Fatalf("StoreMinAge: %v %v", d, err)
	}
	if d, err := cl.SetStoreMinAge(ctx, 24*time.Hour); err != nil || d != 24*time.Hour || f.lastCall() != "SetStoreMinAge 24h0m0s ops-team" {
		t.Fatalf("SetStoreMinAge: %v %v %q", d, err, f.lastCall())
	}
	if c, err := cl.SetConnectorCost(ctx, "tokyo-berlin", 33); err != nil || c.Cost != 33 {
		t.Fatalf("SetConnectorCost: %+v %v", c, err)
	}
	if c, err := cl.SetConnectorState(ctx, "tokyo-berlin", false); err != nil || c.Up {
		t.Fatalf("SetConnectorState: %+v %v", c, err)
	}
	if s, err := cl.SetServerMaintenance(ctx, "ex1", true); err != nil || !s.Down {
		t.Fatalf("SetServerMaintenance: %+v %v", s, err)
	}
	if ls, err := cl.LinkState(ctx); err != nil || ls.Version != 7 || len(ls.Connectors) != 1 || ls.Connectors[0].Cost != 33 {
		t.Fatalf("LinkState: %+v %v", ls, err)
	}
	if err := cl.AddStore(ctx, StoreRequest{Server: "ex1", Name: "n", Hierarchy: "H"}); err != nil || f.lastCall() != "AddStore ex1 n public H" {
		t.Fatalf("AddStore: %v %q", err, f.lastCall())
	}
	if err := cl.AddReplica(ctx, ReplicaRequest{Hierarchy: "H", Folder: "/f", Store: "s"}); err != nil || f.lastCall() != "AddReplica H /f s" {
		t.Fatalf("AddReplica: %v %q", err, f.lastCall())
	}
	if err := cl.RenameFolder(ctx, FolderRequest{Hierarchy: "H", Folder: "/f", To: "/g"}); err != nil || f.lastCall() != "RenameFolder H /f /g" {
		t.Fatalf("RenameFolder: %v %q", err, f.lastCall())
	}
	if err := cl.DeleteFolder(ctx, FolderRequest{Hierarchy: "H", Folder: "/g"}); err != nil || f.lastCall() != "DeleteFolder H /g" {
		t.Fatalf("DeleteFolder: %v %q", err, f.lastCall())
	}
	var apiErr *APIError
	if err := cl.DeleteFolder(ctx, FolderRequest{Hierarchy: "H", Folder: "/missing"}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("DeleteFolder of a missing folder: %v, want a 400", err)
	}
	if err := cl.RenameFolder(ctx, FolderRequest{Hierarchy: "H", Folder: "/f"}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("RenameFolder without to: %v, want a 400", err)
	}
	if err := cl.SetFolderPermission(ctx, PermissionRequest{Hierarchy: "H", Folder: "/f", Principal: "alice", Role: "Editor"}); err != nil || f.lastCall() != "SetFolderPermission H /f alice Editor" {
		t.Fatalf("SetFolderPermission: %v %q", err, f.lastCall())
	}
	if err := cl.RemoveFolderPermission(ctx, PermissionRequest{Hierarchy: "H", Folder: "/f", Principal: "Anonymous", Role: "Owner"}); err != nil || f.lastCall() != "SetFolderPermission H /f Anonymous " {
		t.Fatalf("RemoveFolderPermission: %v %q", err, f.lastCall())
	}
	if err := cl.SetFolderPermission(ctx, PermissionRequest{Hierarchy: "H", Folder: "/f", Principal: "alice"}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("SetFolderPermission without a role: %v, want a 400", err)
	}
	if err := cl.SetFolderPermission(ctx, PermissionRequest{Hierarchy: "H", Folder: "/f", Role: "Editor"}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("SetFolderPermission without a principal: %v, want a 400", err)
	}
	now := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	if d, err := cl.Route(ctx, "sales@contoso.example", "ex2", now); err != nil || d.Store != "ex3-pub" || !d.Now.Equal(now) {
		t.Fatalf("Route: %+v %v", d, err)
	}
	if items, err := cl.QueueList(ctx); err != nil || len(items) != 1 || items[0].Recipients[0].State != "deferred" {
		t.Fatalf("QueueList: %+v %v", items, err)
	}
	if it, err := cl.QueueShow(ctx, "q1"); err != nil || it.Size != 123 {
		t.Fatalf("QueueShow: %+v %v", it, err)
	}
	for name, fn := range map[string]func() error{
		"QueueRetry q1":  func() error { return cl.QueueRetry(ctx, "q1") },
		"QueueRetry ":    func() error { return cl.QueueFlush(ctx) },
		"QueueDelete q1": func() error { return cl.QueueDelete(ctx, "q1") },
		"Reload":         func() error { return cl.Reload(ctx) },
	} {
		if err := fn(); err != nil || f.lastCall() != name {
			t.Fatalf("%s: %v (last call %q)", name, err, f.lastCall())
		}
	}

	// Errors carry the server's message and field.
	_, err := cl.SetConnectorCost(ctx, "tokyo-berlin", 500)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "cost" || !strings.Contains(ae.Message, "1–100") {
		t.Fatalf("bad cost error: %#v", err)
	}
	if _, err := cl.QueueShow(ctx, "gone"); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "gone") {
		t.Fatalf("404 error: %v", err)
	}
	bad := &Client{BaseURL: srv.URL, Token: "wrong"}
	if _, err := bad.LinkState(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("401 error: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	var ce *ConnError
	if _, err := (&Client{BaseURL: dead, Token: tok}).LinkState(ctx); !errors.As(err, &ce) {
		t.Fatalf("unreachable server: %v", err)
	}
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	org := &config.Org{Dir: dir}
	a, err := ResolveToken(org, filepath.Join(dir, "data", "ex1"))
	if err != nil || len(a) != 64 {
		t.Fatalf("generated token %q: %v", a, err)
	}
	st, err := os.Stat(filepath.Join(dir, "data", "ex1", TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	if b, _ := ResolveToken(org, filepath.Join(dir, "data", "ex1")); b != a {
		t.Fatalf("second resolve %q != %q", b, a)
	}
	os.WriteFile(filepath.Join(dir, "tok.txt"), []byte(" from-file \n"), 0o600)
	if got, err := ResolveToken(&config.Org{Dir: dir, Admin: config.Admin{TokenFile: "tok.txt"}}, ""); err != nil || got != "from-file" {
		t.Fatalf("token_file: %q %v", got, err)
	}
	if _, err := ResolveToken(&config.Org{Dir: dir, Admin: config.Admin{TokenFile: "missing.txt"}}, ""); err == nil {
		t.Fatal("missing token_file accepted")
	}
	if got, _ := ResolveToken(&config.Org{Admin: config.Admin{Token: "inline"}}, ""); got != "inline" {
		t.Fatalf("inline token %q", got)
	}
}

// orgFile writes the demo organization with ex1's listen.admin pointed at
// addr, and the token inline when given.
func orgFile(t *testing.T, addr, token string) string {
	t.Helper()
	y := strings.Replace(string(examples.Contoso), "127.0.0.1:8011", addr, 1)
	// ex2's admin port must be closed even when a demo organization runs on
	// this machine: use a port that was just free.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	y = strings.Replace(y, "127.0.0.1:8021", closed, 1)
	if token != "" {
		y += "admin:\n  token: " + token + "\n"
	}
	p := filepath.Join(t.TempDir(), "org.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(args ...string) (string, int) {
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), ExitCode(err)
}

func TestCommand(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(NewHandler(f, tok, nil, nil))
	defer srv.Close()
	cfg := orgFile(t, srv.Listener.Addr().String(), tok)
	base := []string{"--config", cfg, "--data-dir", t.TempDir()}
	run := func(args ...string) (string, int) { return runCLI(append(args, base...)...) }

	// Issue 10 item 6: an outbound connector is a link-state entry; the
	// table says what it carries from where, and why it is down.
	f.conns["internet"] = &linkstate.Connector{Name: "internet", Outbound: true, Cost: 5, Causes: linkstate.Causes{linkstate.CauseHopHealth},
		AddressSpaces: []string{"*"}, Sources: []string{"ex1", "ex2"}}
	if out, code := run("linkstate"); code != 0 || !hasLine(out, "internet outbound * from ex1,ex2 5 down hop-health - -") {
		t.Errorf("linkstate with an outbound connector (%d):\n%s", code, out)
	}
	delete(f.conns, "internet")

	for _, c := range []struct {
		args []string
		code int
		call string
		out  []string
	}{
		{[]string{"get", "store-min-age"}, 0, "", []string{"store_min_age 48h"}},
		{[]string{"set", "store-min-age", "24h"}, 0, "SetStoreMinAge 24h0m0s cli", []string{"store_min_age set to 24h"}},
		{[]string{"connector", "set-cost", "tokyo-berlin", "20"}, 0, "SetConnectorCost tokyo-berlin 20 cli", []string{"tokyo-berlin: cost 20"}},
		{[]string{"connector", "down", "tokyo-berlin"}, 0, "SetConnectorState tokyo-berlin false cli", []string{"tokyo-berlin: down"}},
		{[]string{"connector", "up", "tokyo-berlin"}, 0, "SetConnectorState tokyo-berlin true cli", nil},
		{[]string{"server", "maintenance", "ex1", "on"}, 0, "SetServerMaintenance ex1 true cli", []string{"maintenance on"}},
		{[]string{"linkstate"}, 0, "", []string{"link-state version 12", "runtime changes   7", "CONNECTOR", "tokyo-berlin", "rg-tokyo <-> rg-berlin", "SERVER", "ex1",
			"CAUSES", "hop-health,maintenance"}}, // issue 10 item 3: every cause holding ex3 down
		{[]string{"store", "add", "--server", "ex1", "--name", "ex1-pub2", "--hierarchy", "Public Folders"}, 0, "AddStore ex1 ex1-pub2 public Public Folders", []string{"store ex1-pub2 added on ex1"}},
		{[]string{"replica", "add", "--hierarchy", "Public Folders", "--folder", "/Sales", "--store", "ex3-pub"}, 0, "AddReplica Public Folders /Sales ex3-pub", nil},
		{[]string{"folder", "permission", "set", "--hierarchy", "Public Folders", "--folder", "/Sales", "--user", "alice", "--role", "Editor"}, 0,
			"SetFolderPermission Public Folders /Sales alice Editor", []string{"/Sales: alice is Editor"}},
		{[]string{"folder", "permission", "remove", "--hierarchy", "Public Folders", "--folder", "/Sales", "--user", "Anonymous"}, 0,
			"SetFolderPermission Public Folders /Sales Anonymous ", []string{"entry of Anonymous removed"}},
		{[]string{"route", "--to", "sales@contoso.example", "--at", "ex2", "--now", "2025-07-01T00:00:00Z"}, 0, "Route ex2 sales@contoso.example 2025-07-01T00:00:00Z", []string{"ex3-pub"}},
		{[]string{"queue", "list"}, 0, "QueueList", []string{"MESSAGE-ID", "q1", "<m1@x>", "sales@contoso.example (deferred)"}},
		{[]string{"queue", "show", "q1"}, 0, "QueueShow q1", []string{"no replica reachable", "deferred"}},
		{[]string{"queue", "retry", "q1"}, 0, "QueueRetry q1", nil},
		{[]string{"queue", "delete", "q1"}, 0, "QueueDelete q1", nil},
		{[]string{"queue", "flush"}, 0, "QueueRetry ", nil},
		{[]string{"reload"}, 0, "Reload", []string{"reloaded"}},
		// refused by the server: exit 1 with its message
		{[]string{"connector", "set-cost", "tokyo-berlin", "500"}, 1, "", []string{"cost: must be an integer 1–100"}},
		{[]string{"queue", "show", "nope"}, 1, "", []string{"not found"}},
		// usage errors: exit 2
		{[]string{"connector", "set-cost", "tokyo-berlin", "ten"}, 2, "", []string{"not an integer"}},
		{[]string{"set", "store-min-age", "soon"}, 2, "", []string{"not a duration"}},
		{[]string{"server", "maintenance", "ex1", "maybe"}, 2, "", []string{"not on or off"}},
		{[]string{"connector", "set-cost", "tokyo-berlin"}, 2, "", nil},
		{[]string{"route"}, 2, "", []string{"to"}},
		{[]string{"linkstate", "--bogus"}, 2, "", []string{"bogus"}},
		{[]string{"linkstate", "--server", "ex99"}, 2, "", []string{"ex99"}},
	} {
		before := f.lastCall()
		out, code := run(c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d; output:\n%s", c.args, code, c.code, out)
			continue
		}
		if c.call != "" && !strings.HasPrefix(f.lastCall(), c.call) {
			t.Errorf("%v: Ops call %q, want %q (before %q)", c.args, f.lastCall(), c.call, before)
		}
		for _, want := range c.out {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, want, out)
			}
		}
	}

	// --json prints the API's JSON.
	out, code := run("linkstate", "--json")
	var ls LinkState
	if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || ls.Version != 7 || ls.Connectors[0].Name != "tokyo-berlin" {
		t.Fatalf("linkstate --json: %d %s", code, out)
	}
	if !strings.Contains(out, `"causes": [`) || !strings.Contains(out, `"hop-health"`) {
		t.Errorf("linkstate --json does not show the causes:\n%s", out)
	}
	out, code = run("get", "store-min-age", "--json")
	var m MinAge
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.StoreMinAge != "24h" {
		t.Fatalf("get --json: %d %s", code, out)
	}
	out, code = run("queue", "list", "--json")
	var items []QueueItem
	if code != 0 || json.Unmarshal([]byte(out), &items) != nil || len(items) != 1 {
		t.Fatalf("queue list --json: %d %s", code, out)
	}

	// Another server of the organization whose admin port is closed: exit 3.
	out, code = run("linkstate", "--server", "ex2", "--timeout", "2s")
	if code != ExitUnreachable || !strings.Contains(out, "cannot reach") {
		t.Fatalf("unreachable server: exit %d\n%s", code, out)
	}
}

// Without admin.token the CLI reads the token the server generated into
// its data directory (<data-dir>/<server>/admin.token).
func TestCommandGeneratedToken(t *testing.T) {
	f := newFake()
	dataBase := t.TempDir()
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer srv.Close()
	cfg := orgFile(t, srv.Listener.Addr().String(), "")
	org, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := ResolveToken(org, org.DataDir(&org.Servers[0], dataBase))
	if err != nil {
		t.Fatal(err)
	}
	h = NewHandler(f, token, nil, nil)
	if out, code := runCLI("linkstate", "--config", cfg, "--data-dir", dataBase); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if out, code := runCLI("linkstate", "--config", cfg, "--data-dir", t.TempDir()); code != ExitRefused || !strings.Contains(out, "401") {
		t.Fatalf("other data dir (other token): exit %d\n%s", code, out)
	}
}

// hasLine reports whether out has a line whose fields, joined by single
// spaces, are want (tabwriter's padding aside).
func hasLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}

package load

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/node"
)

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:143": true, "127.3.4.5:1": true, "[::1]:143": true, "localhost:143": true,
		"10.0.0.1:143": false, "example.com:143": false, "127.0.0.1": false, "": false,
	} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no bound":     {Addr: "127.0.0.1:1", User: "u", Mode: ModeLogin},
		"unknown mode": {Addr: "127.0.0.1:1", User: "u", Mode: "idle", N: 1},
		"not loopback": {Addr: "192.0.2.1:143", User: "u", Mode: ModeLogin, N: 1},
		"no user":      {Addr: "127.0.0.1:1", Mode: ModeLogin, N: 1},
		"wait no n":    {Addr: "127.0.0.1:1", User: "u", Mode: ModeWait},
	} {
		if _, err := Run(t.Context(), cfg); err == nil {
			t.Errorf("%s: Run accepted %+v", name, cfg)
		}
	}
}

// orgYAML: s1 holds alice's mailbox, s2 proxies to it (SPEC A5).
const orgYAML = `
organization: LoadTest
domains: [load.example]
secret: load-secret-0123456789abcdef0123456789
access: {cross_site: proxy, login_type: PlainTextLogin}
routing_groups: [{name: rg}]
sites: [{name: s}]
servers:
  - {name: s1, site: s, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: s, routing_group: rg, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"}}
users:
  - {name: alice, addresses: [alice@load.example], mailbox_store: s1-mbx, password: alice-pw}
`

func startOrg(t *testing.T) (direct, proxied string) {
	t.Helper()
	org, err := config.Parse([]byte(orgYAML), "load.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := node.StartAll(t.Context(), org, nil, node.Options{BaseDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c.Nodes["s1"].Org.ServerByName("s1").Listen.IMAP, c.Nodes["s2"].Org.ServerByName("s2").Listen.IMAP
}

// Every mode against a real pfrouter access tier, direct and proxied:
// append puts messages in, wait sees them, fetch reads them all back
// (headers smaller than bodies), login counts logins; a wrong password
// is counted as a failure, not reported as success.
func TestRunModesAgainstPfrouter(t *testing.T) {
	direct, proxied := startOrg(t)
	base := Config{User: "alice", Pass: "alice-pw", Timeout: 20 * time.Second}
	run := func(cfg Config) *Result {
		t.Helper()
		r, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatalf("%s at %s: %v", cfg.Mode, cfg.Addr, err)
		}
		return r
	}
	app := base
	app.Addr, app.Mode, app.N, app.Conns, app.Size = direct, ModeAppend, 12, 3, 4096
	if r := run(app); r.OK != 12 || r.Failed != 0 || r.Bytes < 12*4000 {
		t.Fatalf("append: %+v", r)
	}
	for _, addr := range []string{direct, proxied} {
		w := base
		w.Addr, w.Mode, w.Expect, w.Duration = addr, ModeWait, 12, 10*time.Second
		if r := run(w); r.MailboxMessages != 12 {
			t.Fatalf("wait at %s: %+v", addr, r)
		}
		f := base
		f.Addr, f.Mode, f.N, f.Conns = addr, ModeFetchHeaders, 3, 1
		hdr := run(f)
		f.Mode = ModeFetchBodies
		body := run(f)
		if hdr.OK != 3 || hdr.Messages != 36 || body.Messages != 36 || body.Failed != 0 {
			t.Fatalf("fetch at %s: headers %+v bodies %+v", addr, hdr, body)
		}
		if hdr.Bytes <= 0 || body.Bytes < 36*4000 || hdr.Bytes*5 > body.Bytes {
			t.Errorf("fetch at %s: %d header bytes, %d body bytes", addr, hdr.Bytes, body.Bytes)
		}
		l := base
		l.Addr, l.Mode, l.N, l.Conns = addr, ModeLogin, 10, 2
		if r := run(l); r.OK != 10 || r.Failed != 0 || r.OpsPerS <= 0 {
			t.Fatalf("login at %s: %+v", addr, r)
		}
	}
	bad := base
	bad.Addr, bad.Pass, bad.Mode, bad.N = direct, "wrong", ModeLogin, 2
	r := run(bad)
	if r.OK != 0 || r.Failed != 2 {
		t.Fatalf("wrong password: %+v", r)
	}
	var sb strings.Builder
	r.WriteText(&sb)
	if !strings.Contains(sb.String(), "LOGIN alice") {
		t.Errorf("text output lacks the error: %q", sb.String())
	}
}

// A wait that cannot be satisfied ends with an error after its bound.
func TestWaitTimesOut(t *testing.T) {
	direct, _ := startOrg(t)
	_, err := Run(t.Context(), Config{Addr: direct, User: "alice", Pass: "alice-pw", Mode: ModeWait, Expect: 5, Duration: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "holds 0 messages") {
		t.Fatalf("err = %v", err)
	}
}

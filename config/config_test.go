package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/examples"
)

func TestExampleLoads(t *testing.T) {
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		t.Fatal(err)
	}
	if got := org.Routing.EffectiveMinAge(); got != 48*time.Hour {
		t.Errorf("store_min_age = %v", got)
	}
	if org.Access.LoginType != config.LoginSecure {
		t.Errorf("login type default = %q", org.Access.LoginType)
	}
}

func TestDefaults(t *testing.T) {
	org := parse(t, minimal)
	if org.Routing.EffectiveMinAge() != config.DefaultStoreMinAge || org.Routing.HopLimit != 30 ||
		org.Routing.MessageClass != config.ClassPost || org.Access.CrossSite != config.CrossSiteProxy || org.Mode != config.ModeMixed {
		t.Errorf("defaults not applied: %+v %+v", org.Routing, org.Access)
	}
	// R6: an explicit 0 disables the age skip.
	org = parse(t, strings.Replace(minimal, "routing: {}", "routing: {store_min_age: 0}", 1))
	if org.Routing.EffectiveMinAge() != 0 {
		t.Errorf("explicit 0 store_min_age = %v", org.Routing.EffectiveMinAge())
	}
	org = parse(t, strings.Replace(minimal, "routing: {}", "routing: {store_min_age: 2d}", 1))
	if org.Routing.EffectiveMinAge() != 48*time.Hour {
		t.Errorf("2d = %v", org.Routing.EffectiveMinAge())
	}
}

// R15 defaults for mail-enabled and hidden.
func TestR15MailEnabledDefaults(t *testing.T) {
	org := parse(t, minimal)
	f := func(path string) *config.Folder {
		for i := range org.Folders {
			if org.Folders[i].Path == path {
				return &org.Folders[i]
			}
		}
		t.Fatalf("no folder %s", path)
		return nil
	}
	if !org.FolderMailEnabled(f("/Mixed")) || !org.FolderHidden(f("/Mixed")) {
		t.Error("mixed-mode MAPI folder must be mail-enabled and hidden")
	}
	if org.FolderMailEnabled(f("/Native")) {
		t.Error("native-mode MAPI folder must default to mail-disabled")
	}
	if org.FolderMailEnabled(f("/App")) {
		t.Error("application TLH folder must default to mail-disabled")
	}
	if !org.FolderMailEnabled(f("/NativeOn")) || org.FolderHidden(f("/NativeOn")) {
		t.Error("native mail-enabled folder must be visible unless hidden")
	}
}

func TestValidationNamesFieldAndLine(t *testing.T) {
	bad := strings.Replace(full, "replicas: [p1]", "replicas: [ex9-pub]", 1)
	line := 1 + strings.Count(bad[:strings.Index(bad, "replicas: [ex9-pub]")], "\n")
	_, err := config.Parse([]byte(bad), "org.yaml", ".")
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	want := fmt.Sprintf(`org.yaml:%d: folders[0].replicas: store "ex9-pub" is not defined`, line)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error\n%s\ndoes not contain\n%s", err, want)
	}
}

func TestValidationCases(t *testing.T) {
	cases := []struct{ old, new, want string }{
		{"cost: 10", "cost: 0", "connectors[0].cost: 0 is outside 1..100"},
		{"between: [a, b]", "between: [a, zz]", `routing group "zz" is not defined`},
		{"bridgeheads: {a: [s1], b: [s2]}", "bridgeheads: {a: [s2], b: [s2]}", `server "s2" is in routing group "b", not "a"`},
		{"mode: mixed", "mode: hybrid", `mode: "hybrid" is not a mode`},
		{"kind: mailbox}", "kind: tape}", `"tape" is not public or mailbox`},
		{"login_type: SecureLogin", "login_type: Whatever", "access.login_type"},
		{"u@x.example", "u@y.example", "is not an accepted domain"},
		{"store_min_age: 48h", "store_min_age: soon", `"soon" is not a duration`},
		{"mailbox_store: m1", "mailbox_store: p1", "is a public store"},
		{"Anonymous: Contributor", "Anonymous: Boss", `unknown role "Boss"`},
		{"organization: T", "organization: T\nbogus_key: 1", "bogus_key"},
		{"addresses: [m@x.example]", "addresses: [u@x.example]", "already used by"},
		{"organization: T", "organization: T\nsecret: short-secret", "openssl rand -hex 32"},
		{"  - name: s1", "  - name: s1.x", "servers[0].name"},
		{"    replicas: [p1]", "    replicas: [p1]\n    replication: {interval: -1s}", "folders[0].replication.interval"},
		{"    replicas: [p1]", "    replicas: [p1]\n    replication: {max_batch_bytes: 1KB}", "folders[0].replication.max_batch_bytes: must be at least 64KB"},
		{"    replicas: [p1]", "    replicas: [p1]\n    replication: {every: 1h}", "every"},
		{"organization: T", "organization: T\nreplication: {compact_every: 10ms}", "replication.compact_every: must be at least 1s"},
		{"organization: T", "organization: T\nreplication: {silence_limit: 5s}", "replication.silence_limit: must be at least 1m"},
		{"organization: T", "organization: T\nlimits: {store_bodies: files}", `limits.store_bodies: "files" is not inline or value_log`},
		{"organization: T", "organization: T\nreplication: {dedup_retention: 24h}", "replication.dedup_retention: must be longer than routing.message_expiry (48h0m0s)"},
	}
	for _, c := range cases {
		src := strings.Replace(full, c.old, c.new, 1)
		if src == full {
			t.Fatalf("case %q does not apply", c.old)
		}
		_, err := config.Parse([]byte(src), "org.yaml", ".")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: got %v, want %q", c.old, c.new, err, c.want)
		}
	}
	org, err := config.Parse([]byte(full), "org.yaml", ".")
	if err != nil {
		t.Fatalf("full config invalid: %v", err)
	}
	if org.Limits.StoreBodies != config.StoreBodiesInline {
		t.Errorf("limits.store_bodies defaults to %q, want inline", org.Limits.StoreBodies)
	}
	vl, err := config.Parse([]byte(strings.Replace(full, "organization: T", "organization: T\nlimits: {store_bodies: value_log}", 1)), "org.yaml", ".")
	if err != nil || vl.Limits.StoreBodies != config.StoreBodiesValueLog {
		t.Fatalf("store_bodies: value_log: %v, %+v", err, vl)
	}
}

func TestByteSizeAndEmpty(t *testing.T) {
	for in, want := range map[string]int64{"10MB": 10 << 20, "512KB": 512 << 10, "1048576": 1 << 20, "2 GiB": 2 << 30} {
		got, err := config.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%s = %d %v", in, got, err)
		}
	}
	if _, err := config.ParseByteSize("lots"); err == nil {
		t.Error("bad size accepted")
	}
	if _, err := config.Parse(nil, "empty.yaml", "."); err == nil {
		t.Error("empty file accepted")
	}
}

func parse(t *testing.T, src string) *config.Org {
	t.Helper()
	org, err := config.Parse([]byte(src), "t.yaml", ".")
	if err != nil {
		t.Fatal(err)
	}
	return org
}

const minimal = `organization: T
domains: [x.example]
routing: {}
sites: [{name: s}]
routing_groups: [{name: a}]
servers:
  - name: s1
    site: s
    routing_group: a
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: p1, kind: public, hierarchy: PF}
      - {name: p2, kind: public, hierarchy: App}
      - {name: m1, kind: mailbox}
hierarchies: [{name: PF, tlh: mapi}, {name: App, tlh: application}]
folders:
  - {path: /Mixed, hierarchy: PF}
  - {path: /Native, hierarchy: PF, created_mode: native}
  - {path: /NativeOn, hierarchy: PF, created_mode: native, mail_enabled: true}
  - {path: /App, hierarchy: App}
`

const full = `organization: T
domains: [x.example]
mode: mixed
routing:
  store_min_age: 48h
access:
  login_type: SecureLogin
sites: [{name: s}]
routing_groups: [{name: a}, {name: b}]
connectors:
  - name: c1
    between: [a, b]
    cost: 10
    bridgeheads: {a: [s1], b: [s2]}
servers:
  - name: s1
    site: s
    routing_group: a
    listen: {smtp: "127.0.0.1:0"}
    stores:
      - {name: p1, kind: public, hierarchy: PF}
      - {name: m1, kind: mailbox}
  - name: s2
    site: s
    routing_group: b
    listen: {smtp: "127.0.0.1:0"}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - path: /F
    hierarchy: PF
    replicas: [p1]
    addresses: [m@x.example]
    permissions: {Anonymous: Contributor}
users:
  - {name: u, addresses: [u@x.example], mailbox_store: m1, password: pw}
`

// The config loader never panics, whatever it is fed.
func FuzzParse(f *testing.F) {
	f.Add(examples.Contoso)
	f.Add([]byte(full))
	f.Add([]byte(minimal))
	f.Add([]byte("routing: {store_min_age: [1,2]}\nfolders: [{permissions: 3}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		org, err := config.Parse(b, "fuzz.yaml", ".")
		if err == nil && org == nil {
			t.Fatal("nil org without error")
		}
	})
}

// Issue 12: compact_every and dedup_retention have defaults, and the
// dedup retention follows a longer message_expiry (a message retried until
// it expires must be deduplicated throughout).
func TestReplicationMaintenanceKeys(t *testing.T) {
	org := parse(t, full)
	if org.ReplicaSilenceLimit() != config.DefaultSilenceLimit || parse(t, strings.Replace(full, "organization: T", "organization: T\nreplication: {silence_limit: 2h}", 1)).ReplicaSilenceLimit() != 2*time.Hour {
		t.Fatal("replication.silence_limit not read")
	}
	if org.CompactInterval() != config.DefaultCompactEvery || org.DedupRetention() != config.DefaultDedupRetention {
		t.Fatalf("defaults: compact %s, retention %s", org.CompactInterval(), org.DedupRetention())
	}
	org = parse(t, strings.Replace(full, "organization: T", "organization: T\nreplication: {compact_every: 1m, dedup_retention: 100h}", 1))
	if org.CompactInterval() != time.Minute || org.DedupRetention() != 100*time.Hour {
		t.Fatalf("set: compact %s, retention %s", org.CompactInterval(), org.DedupRetention())
	}
	org = parse(t, strings.Replace(full, "  store_min_age: 48h", "  store_min_age: 48h\n  message_expiry: 120h", 1))
	if org.DedupRetention() != 240*time.Hour {
		t.Fatalf("retention under a 5-day message_expiry = %s, want 240h", org.DedupRetention())
	}
}

// Issue 12: a folder's replication keys replace the organization's, one by
// one (interval 0 replicates a folder at once under a longer org interval).
func TestFolderReplicationOverrides(t *testing.T) {
	org := parse(t, strings.Replace(full, "organization: T", "organization: T\nreplication: {interval: 10m}", 1))
	hour, zero := config.Duration(time.Hour), config.Duration(0)
	for _, c := range []struct {
		f    *config.FolderReplication
		want config.Replication
	}{
		{nil, config.Replication{Interval: config.Duration(10 * time.Minute), MaxBatchBytes: config.DefaultReplicationBatch}},
		{&config.FolderReplication{Interval: &hour}, config.Replication{Interval: hour, MaxBatchBytes: config.DefaultReplicationBatch}},
		{&config.FolderReplication{Interval: &zero, MaxBatchBytes: 1 << 20}, config.Replication{Interval: 0, MaxBatchBytes: 1 << 20}},
		{&config.FolderReplication{MaxBatchBytes: 1 << 20}, config.Replication{Interval: config.Duration(10 * time.Minute), MaxBatchBytes: 1 << 20}},
	} {
		if got := org.FolderReplication(c.f); got != c.want {
			t.Errorf("%+v: got %+v, want %+v", c.f, got, c.want)
		}
	}
	src := strings.Replace(full, "    replicas: [p1]", "    replicas: [p1]\n    replication: {interval: 1h, max_batch_bytes: 128KB}", 1)
	f := parse(t, src).Folders[0].Replication
	if f == nil || f.Interval == nil || *f.Interval != hour || f.MaxBatchBytes != 128<<10 {
		t.Fatalf("folders[0].replication parsed as %+v", f)
	}
}

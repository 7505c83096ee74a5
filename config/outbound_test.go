package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pfrouter/config"
)

func withOutbound(list string) string {
	return strings.Replace(full, "servers:\n", "outbound:\n"+list+"servers:\n", 1)
}

// Outbound connectors: defaults (tls required, cost 1, up) and a lookup.
func TestOutboundDefaults(t *testing.T) {
	org := parse(t, withOutbound("  - {name: internet, address_spaces: [\"*\"], smarthost: \"mx.example.net:25\", source_servers: [s1]}\n"))
	c := org.OutboundByName("internet")
	if c == nil || c.TLS != config.OutboundTLSRequired || c.Cost != 1 || c.State != "up" {
		t.Fatalf("outbound defaults: %+v", c)
	}
}

// Every bad outbound field is named as file:line: field: problem; an
// auth_file readable by others is refused.
func TestOutboundValidation(t *testing.T) {
	dir := t.TempDir()
	loose, tight := filepath.Join(dir, "loose.auth"), filepath.Join(dir, "tight.auth")
	os.WriteFile(loose, []byte("u:p\n"), 0o644)
	os.WriteFile(tight, []byte("u:p\n"), 0o600)
	base := `{name: o, address_spaces: ["*"], smarthost: "mx.example.net:25", source_servers: [s1]`
	for _, c := range []struct{ extra, field, problem string }{
		{`, tls: maybe}`, "outbound[0].tls", `"maybe" is not required or opportunistic`},
		{`, cost: 500}`, "outbound[0].cost", "500 is outside 1..100"},
		{`source_servers: [s1]|source_servers: [s9]`, "outbound[0].source_servers", `server "s9" is not defined`},
		{`:25"|"`, "outbound[0].smarthost", "is not host:port"},
		{`["*"]|["bad domain"]`, "outbound[0].address_spaces[0]", "is not"},
		{`["*"]|["x.example"]`, "outbound[0].address_spaces[0]", "is an accepted domain"},
		{`["*"]|[]`, "outbound[0].address_spaces", "at least one"},
		{`, auth_file: "` + loose + `"}`, "outbound[0].auth_file", "group and others must have no access"},
		{`, ca_file: "/nonexistent/ca.pem"}`, "outbound[0].ca_file", "no such file"},
		{`, state: gone}`, "outbound[0].state", `"gone" is not up or down`},
		// One link-state namespace: `admin connector c1 ...` must name one thing.
		{`{name: o,|{name: c1,`, "outbound[0].name", `"c1" is also the name of a connector`},
	} {
		entry := base + c.extra + "\n"
		if old, nw, ok := strings.Cut(c.extra, "|"); ok {
			entry = strings.Replace(base, old, nw, 1) + "}\n"
		}
		src := withOutbound("  - " + entry)
		_, err := config.Parse([]byte(src), "org.yaml", ".")
		if err == nil || !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("%s: got %v, want %s: %s", c.extra, err, c.field, c.problem)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "org.yaml:") {
			t.Errorf("%s: error without file:line: %v", c.extra, err)
		}
	}
	if _, err := config.Parse([]byte(withOutbound("  - "+base+`, auth_file: "`+tight+`", tls: opportunistic}`+"\n")), "org.yaml", "."); err != nil {
		t.Errorf("a 0600 auth_file refused: %v", err)
	}
	dup := withOutbound("  - " + base + "}\n  - " + base + "}\n")
	if _, err := config.Parse([]byte(dup), "org.yaml", "."); err == nil || !strings.Contains(err.Error(), "outbound[1].name") {
		t.Errorf("duplicate name: %v", err)
	}
}

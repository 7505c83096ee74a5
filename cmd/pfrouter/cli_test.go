package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"pfrouter/examples"
)

// bin is the pfrouter binary the tests run: exit codes are only real on a
// built binary (`go run` turns every failure into 1).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pfrouter-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "pfrouter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the binary with a clean environment (no PFROUTER_* from the
// developer's shell) in dir.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return result{code, o.String(), e.String()}
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PFROUTER_") {
			out = append(out, kv)
		}
	}
	return out
}

// freePort returns a port nothing listens on (it was free a moment ago).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

// demoWithPorts writes the demo organization with every port replaced by
// a free one and returns its path and the old->new port map.
func demoWithPorts(t *testing.T, dir string) (string, map[string]string) {
	t.Helper()
	ports := map[string]string{}
	used := map[string]bool{} // the kernel may hand a just-closed port out again
	src := addrRE.ReplaceAllStringFunc(string(examples.Contoso), func(a string) string {
		old := strings.TrimPrefix(a, "127.0.0.1:")
		for ports[old] == "" || !used[ports[old]] {
			if p := strconv.Itoa(freePort(t)); !used[p] {
				ports[old], used[p] = p, true
			}
		}
		return "127.0.0.1:" + ports[old]
	})
	path := filepath.Join(dir, "org.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ports
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// anyCode: the case checks the output only.
const anyCode = -1

// One test per exit code of the CLI (main.go's doc comment and
// docs/operations.md list them).
func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	demo, _ := demoWithPorts(t, dir) // nothing listens on its ports
	down := writeFile(t, dir, "down.yaml", strings.ReplaceAll(string(examples.Contoso), "    cost: ", "    state: down\n    cost: "))
	typo := writeFile(t, dir, "typo.yaml", strings.Replace(string(examples.Contoso), "store_min_age:", "store_min_ag:", 1))
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"version", []string{"--version"}, 0, "pfrouter ", ""},
		{"route delivered (R7-R9)", []string{"route", "--at", "ex1", "--to", "sales@contoso.example"}, 0, "ex3-pub", ""},
		{"route json keeps < and >", []string{"route", "--at", "ex1", "--to", "<sales@contoso.example>", "--json"}, anyCode, `"<sales@contoso.example>"`, ""},
		{"route report (S1)", []string{"route", "--to", "nobody@contoso.example"}, exitReport, "", "non-delivery report"},
		{"route queued (R10)", []string{"route", "--config", down, "--at", "ex1", "--to", "eng@contoso.example"}, exitQueued, "", "would wait in the queue"},
		{"check ok", []string{"check", "--config", demo}, 0, "ok: 4 servers", ""},
		{"check typo (O5)", []string{"check", "--config", typo}, 1, "", "routing.store_min_ag: unknown key (did you mean store_min_age?)"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown admin command", []string{"admin", "frobnicate"}, 2, "", `unknown command "frobnicate" for "pfrouter admin"`},
		{"unknown connector command", []string{"admin", "connector", "foo"}, 2, "", `unknown command "foo" for "pfrouter admin connector"`},
		{"extra argument", []string{"check", "extra"}, 2, "", "see pfrouter check --help"},
		{"unknown flag", []string{"route", "--frob"}, 2, "", "unknown flag"},
		{"missing argument", []string{"admin", "queue", "show"}, 2, "", "accepts 1 arg"},
		{"bad --now", []string{"route", "--to", "sales@contoso.example", "--now", "yesterday"}, 2, "", "--now"},
		{"admin unreachable", []string{"admin", "--config", demo, "--data-dir", dir, "linkstate"}, 3, "", "cannot reach admin API"},
		{"trace every server down", []string{"trace", "--config", demo, "--data-dir", dir, "--timeout", "5s", "x@example.net"}, 3, "", "did not answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, dir, nil, c.args...)
			if (c.code != anyCode && r.code != c.code) || !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("pfrouter %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout ~ %q, stderr ~ %q",
					strings.Join(c.args, " "), r.code, c.code, r.stdout, r.stderr, c.stdout, c.stderr)
			}
			if strings.Contains(r.stdout, `\u003c`) {
				t.Errorf("JSON escapes <: %s", r.stdout)
			}
		})
	}
}

// A 401 names the token file that was read, so the operator sees that the
// CLI and the server disagree on --data-dir.
func TestCLIUnauthorizedNamesTokenFile(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"missing or wrong bearer token"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	org := addrRE.ReplaceAllString(string(examples.Contoso), "127.0.0.1:0")
	org = strings.Replace(org, `admin: "127.0.0.1:0"`, `admin: "`+addr+`"`, 1)
	cfg := writeFile(t, dir, "org.yaml", org)
	data := filepath.Join(dir, "elsewhere")
	r := run(t, dir, nil, "admin", "--config", cfg, "--data-dir", data, "linkstate")
	want := filepath.Join(data, "ex1", "admin.token")
	if r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, want) {
		t.Fatalf("exit %d, stderr %q; want 1 and the token file %s", r.code, r.stderr, want)
	}
}

// O5: serve refuses every broken configuration with exit 1 and a message,
// never a panic: the errors config.Parse finds, and those only starting
// finds (a certificate missing, a port taken, a data directory that is a
// file).
func TestServeRefusesInvalidConfigsO5(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	notDir := writeFile(t, dir, "not-a-dir", "")
	base := addrRE.ReplaceAllString(string(examples.Contoso), "127.0.0.1:0")
	cases := []struct{ name, old, new, want string }{
		{"key typo", "store_min_age:", "store_min_ag:", "did you mean store_min_age?"},
		{"bad duration", "store_min_age: 48h", "store_min_age: soon", `routing.store_min_age: "soon" is not a duration`},
		{"site missing", "    site: tokyo\n    routing_group: rg-tokyo\n", "    routing_group: rg-tokyo\n", "site: is required"},
		{"otlp endpoint malformed", "access:", "telemetry: {traces: otlp, endpoint: \"127.0.0.1:4318\"}\naccess:", "telemetry.endpoint"},
		{"unknown exporter", "access:", "telemetry: {traces: zipkin}\naccess:", "telemetry.traces"},
		{"no servers", "\nservers:\n", "\nservers: []\nxservers:\n", "xservers"},
		{"certificate missing", "access:", "tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\naccess:", "nonexistent"},
		{"data dir is a file", "    routing_group: rg-paris\n", "    routing_group: rg-paris\n    data_dir: " + notDir + "\n", "data directory"},
		{"port taken", `smtp: "127.0.0.1:0"`, `smtp: "` + taken.Addr().String() + `"`, "listen.smtp"},
		{"empty file", base, "", "empty"},
		{"not yaml", base, "servers: [", "yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(base, c.old, c.new, 1)
			if src == base && c.old != c.new {
				t.Fatalf("case %q does not apply", c.old)
			}
			cfg := writeFile(t, t.TempDir(), "org.yaml", src)
			r := run(t, dir, nil, "serve", "--config", cfg, "--data-dir", t.TempDir())
			if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "panic") {
				t.Errorf("exit %d (want 1), stderr:\n%s\nwant ~ %q", r.code, r.stderr, c.want)
			}
		})
	}
}

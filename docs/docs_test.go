// Package docs holds pfrouter's documentation; its test keeps the docs
// true: every relative link resolves inside the repository, and every
// shell command of README.md runs against a served demo organization.
package docs

import (
	"bufio"
	"bytes"
	"context"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const root = ".."

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func markdownFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(root, "README.md")}, files...)
}

// Every relative link of README.md and docs/*.md names a file inside the
// repository (a clone alone is enough to read the docs).
func TestRelativeLinksResolve(t *testing.T) {
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range markdownFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("../shared")) {
			t.Errorf("%s refers to ../shared, outside the repository", f)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p, err := filepath.Abs(filepath.Join(filepath.Dir(f), target))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(p, rootAbs+string(filepath.Separator)) {
				t.Errorf("%s: link %q leaves the repository", f, m[1])
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: link %q does not resolve: %v", f, m[1], err)
			}
		}
	}
}

// readmeCommands are the command lines of README.md's ```sh blocks, but
// the first block (serve and the test run: this test is what they do).
func readmeCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in, block := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.HasPrefix(line, "```sh"):
			in = true
			block++
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in && block > 1:
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				out = append(out, s)
			}
		}
	}
	return out
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Every shell command of README.md works against the demo organization,
// served by the binary on free ports (the commands' ports are rewritten
// the same way). A command may need a moment (a post is routed and relayed
// first), so each is retried for up to 30 s; commands whose tool is not
// installed are skipped with a message. Set PFROUTER_SKIP_README_RUN=1
// to skip it where the demo cannot be started.
func TestReadmeCommandsRun(t *testing.T) {
	// Not skipped in -short: CI runs -short, and the README must not go
	// stale there (the whole test takes about 10 s).
	if os.Getenv("PFROUTER_SKIP_README_RUN") != "" {
		t.Skip("PFROUTER_SKIP_README_RUN is set")
	}
	cmds := readmeCommands(t)
	if len(cmds) < 5 {
		t.Fatalf("only %d README commands found", len(cmds))
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pfrouter")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/pfrouter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	demo, err := os.ReadFile(filepath.Join(root, "examples", "contoso.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	used := map[string]bool{} // the kernel may hand a just-closed port out again
	remap := func(s string) string {
		return addrRE.ReplaceAllStringFunc(s, func(a string) string {
			old := strings.TrimPrefix(a, "127.0.0.1:")
			for ports[old] == "" || !used[ports[old]] {
				if p := freePort(t); !used[p] {
					ports[old], used[p] = p, true
				}
			}
			return "127.0.0.1:" + ports[old]
		})
	}
	data := filepath.Join(dir, "pfrouter-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// serve without --config serves the demo copy in its data directory:
	// give it the copy with the test's ports.
	if err := os.WriteFile(filepath.Join(data, "contoso.yaml"), []byte(remap(string(demo))), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--data-dir", data)
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	serve.Dir = dir
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			serve.Process.Kill()
		}
		if t.Failed() {
			t.Logf("serve output:\n%s", serveOut.String())
		}
	}()
	if !waitFor(30*time.Second, func() bool { return fileExists(filepath.Join(data, "pfrouter.pid")) }) {
		t.Fatalf("serve did not start:\n%s", serveOut.String())
	}
	repo, _ := filepath.Abs(root)
	for _, c := range cmds {
		line := remap(c)
		line = strings.ReplaceAll(line, "go run ./cmd/pfrouter", bin)
		line = strings.ReplaceAll(line, "examples/contoso.yaml", filepath.Join(repo, "examples", "contoso.yaml"))
		tool := strings.Fields(line)[0]
		if _, err := exec.LookPath(tool); err != nil && !strings.HasPrefix(tool, "/") {
			t.Logf("skipped (no %s on this machine): %s", tool, c)
			continue
		}
		var out []byte
		var err error
		ok := waitFor(30*time.Second, func() bool {
			cmd := exec.Command("bash", "-o", "pipefail", "-c", line)
			cmd.Dir = dir // pfrouter-data is relative to it, as in the README
			cmd.Env = append(os.Environ(), "PFROUTER_DATA="+data)
			out, err = cmd.CombinedOutput()
			return err == nil
		})
		if !ok {
			t.Errorf("README command failed: %s\n(as run: %s)\n%v\n%s", c, line, err, out)
		}
	}
}

func waitFor(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

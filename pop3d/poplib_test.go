package pop3d

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// poplibScript drives a real client, Python's poplib, through STLS, login,
// STAT, LIST, UIDL, TOP, RETR and DELE + QUIT, and prints what it saw.
const poplibScript = `
import json, poplib, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = poplib.POP3(host, port, timeout=10)
out = {"welcome": p.getwelcome().decode()}
out["capa"] = sorted(p.capa().keys())
p.stls(context=ssl.create_default_context(cafile=cafile))
p.user("alice")
p.pass_("secret pw")
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["top"] = [l.decode() for l in p.top(2, 1)[1]]
out["retr"] = [l.decode() for l in p.retr(2)[1]]
p.dele(1)
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

func TestPythonPoplib_A6(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	srvCfg, _, caFile := selfSigned(t)
	md := newMaildrop(msg1, msg2)
	_, addr := startServer(t, Options{Auth: &fakeAuth{md: md}, TLSConfig: srvCfg})
	host, port, _ := net.SplitHostPort(addr)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(poplibScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	outb, err := exec.CommandContext(ctx, py, script, host, port, caFile).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib client failed: %v\n%s", err, outb)
	}
	var out struct {
		Welcome string
		Capa    []string
		Stat    []int
		List    []string
		Uidl    []string
		Top     []string
		Retr    []string
		Quit    string
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("parsing client output %q: %v", outb, err)
	}
	for _, c := range []string{"STLS", "UIDL", "TOP", "USER", "SASL"} {
		if !slices.Contains(out.Capa, c) {
			t.Errorf("poplib capa %q lacks %s", out.Capa, c)
		}
	}
	if len(out.Stat) != 2 || out.Stat[0] != 2 {
		t.Errorf("stat %v", out.Stat)
	}
	if !slices.Equal(out.Uidl, []string{"1 uid-1", "2 uid-2"}) {
		t.Errorf("uidl %q", out.Uidl)
	}
	// poplib un-stuffs: the message comes back as stored, CRLF-normalised.
	wantRetr := strings.Split(strings.TrimSuffix(strings.ReplaceAll(msg2, "\n", "\r\n"), "\r\n"), "\r\n")
	if !slices.Equal(out.Retr, wantRetr) {
		t.Errorf("retr %q, want %q", out.Retr, wantRetr)
	}
	if !slices.Equal(out.Top, wantRetr[:4]) {
		t.Errorf("top %q, want %q", out.Top, wantRetr[:4])
	}
	if !strings.HasPrefix(out.Quit, "+OK") {
		t.Errorf("quit %q", out.Quit)
	}
	md.waitClosed(t)
	if d := md.deleteCalls(); len(d) != 1 || !slices.Equal(d[0], []string{"uid-1"}) {
		t.Errorf("Delete calls %v", d)
	}
}

// TestCurlRetr checks another real client: curl prefers SASL PLAIN from
// CAPA, then RETRs message 1 and un-stuffs it.
func TestCurlRetr(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	auth := &fakeAuth{md: newMaildrop(msg2)}
	_, addr := startServer(t, Options{Auth: auth})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "20", "-u", "alice:secret pw", "pop3://"+addr+"/1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl failed: %v\n%s", err, out)
	}
	if want := strings.ReplaceAll(msg2, "\n", "\r\n") + "\r\n"; string(out) != want {
		t.Errorf("curl got %q, want %q", out, want)
	}
	if r := auth.requests(); len(r) != 1 || r[0].Mechanism != "PLAIN" {
		t.Errorf("curl login requests %+v, want one SASL PLAIN", r)
	}
}

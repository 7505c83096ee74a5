package gossip

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"pfrouter/servercred"
	"strings"
	"sync"
	"testing"
	"time"
)

// The cross-process test re-executes this test binary as a gossip server:
// with GOSSIP_CHILD_NAME set, TestMain runs childMain instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("GOSSIP_CHILD_NAME") != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain runs one node and answers line commands on stdin:
// "publish KIND KEY JSON", "get KIND KEY", "digest"; EOF stops it.
func childMain() int {
	var seeds []string
	if s := os.Getenv("GOSSIP_CHILD_SEEDS"); s != "" {
		seeds = strings.Split(s, ",")
	}
	org, err := servercred.New(os.Getenv("GOSSIP_CHILD_SECRET"))
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	id, err := org.Identity(os.Getenv("GOSSIP_CHILD_NAME"))
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	n, err := Start(context.Background(), Options{
		Name: os.Getenv("GOSSIP_CHILD_NAME"), Bind: "127.0.0.1:0", Seeds: seeds, Identity: id,
		Secret: os.Getenv("GOSSIP_CHILD_SECRET"), Dir: os.Getenv("GOSSIP_CHILD_DIR"),
		Applier:          ApplierFunc(func(Record) error { return nil }),
		PushPullInterval: 300 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, JoinRetry: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer n.Close()
	fmt.Println("ADDR", n.Seed())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		switch {
		case f[0] == "publish" && len(f) == 4:
			key := f[2]
			if key == "-" {
				key = ""
			}
			r, err := n.Publish(f[1], key, json.RawMessage(f[3]))
			if err != nil {
				fmt.Println("ERR", err)
				continue
			}
			fmt.Println("OK", r.Version)
		case f[0] == "get" && len(f) == 3:
			r, ok := n.Record(f[1], f[2])
			if !ok {
				fmt.Println("NONE")
				continue
			}
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
		case f[0] == "digest":
			fmt.Println(n.Digest())
		default:
			fmt.Println("ERR unknown command")
		}
	}
	return 0
}

type child struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string
}

func spawn(t *testing.T, name string, seeds ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOSSIP_CHILD_NAME="+name, "GOSSIP_CHILD_SEEDS="+strings.Join(seeds, ","),
		"GOSSIP_CHILD_SECRET="+testSecret, "GOSSIP_CHILD_DIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outp)}
	t.Cleanup(func() {
		c.in.Close()
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
	line := c.read(t)
	if !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child %s: %s", name, line)
	}
	c.addr = strings.TrimPrefix(line, "ADDR ")
	return c
}

func (c *child) read(t *testing.T) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := c.out.ReadString('\n'); ch <- res{s, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("child output: %v", r.err)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(10 * time.Second):
		t.Fatal("child did not answer")
		return ""
	}
}

func (c *child) do(t *testing.T, cmd string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatalf("child input: %v", err)
	}
	return c.read(t)
}

// Servers in separate processes converge: a change made in a child reaches
// the parent and the other child, and the other way round.
func TestConvergeAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	a := start(t, fastOpts(t, "ex1"))
	b := spawn(t, "ex2", a.Seed())
	c := spawn(t, "ex3", a.Seed())
	eventually(t, 15*time.Second, "three processes in one cluster", func() bool { return aliveCount(a) == 3 })

	if got := b.do(t, `publish connector tokyo-berlin {"cost":42,"up":true}`); !strings.HasPrefix(got, "OK ") {
		t.Fatalf("publish in ex2: %s", got)
	}
	eventually(t, 10*time.Second, "ex2's change in ex1", func() bool {
		r, ok := a.Record(KindConnector, "tokyo-berlin")
		return ok && r.Origin == "ex2" && value(t, r)["cost"] == float64(42)
	})
	if _, err := a.Publish(KindServer, "ex4", map[string]bool{"down": true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ex1's change in ex3", func() bool {
		var r Record
		line := c.do(t, "get server ex4")
		return line != "NONE" && json.Unmarshal([]byte(line), &r) == nil && r.Origin == "ex1"
	})
	eventually(t, 10*time.Second, "digests to agree across processes", func() bool {
		d := a.Digest()
		return b.do(t, "digest") == d && c.do(t, "digest") == d
	})
}

package node

import (
	"bytes"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startServe runs `pfrouter serve` with args as a child process, waits
// until every address in listening accepts connections, and kills it at
// the end of the test, printing its log if the test failed.
func startServe(t *testing.T, bin, name string, args []string, listening ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--log-level", "warn"}, args...)...)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logBuf.String())
		}
	})
	for _, a := range listening {
		waitListening(t, a)
	}
	return cmd
}

// stopServe sends SIGTERM and fails the test unless the child exits
// within 20 s.
func stopServe(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop on SIGTERM")
	}
}

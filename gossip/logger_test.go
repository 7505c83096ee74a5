package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Issue 10 item 7: memberlist's "Failed to send gossip ... use of closed
// network connection" at shutdown is expected and must not be an ERROR;
// other memberlist errors stay errors.
func TestStdLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newStdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, c := range []struct{ line, level string }{
		{"2026/11/29 20:00:00 [ERR] memberlist: Failed to send gossip to 127.0.0.1:7946: write udp 127.0.0.1:7946->127.0.0.1:7947: use of closed network connection", "DEBUG"},
		{"[ERR] memberlist: Failed to send gossip to 127.0.0.1:7946: connection refused", "ERROR"},
		{"[WARN] memberlist: Refuting a suspect message", "WARN"},
	} {
		buf.Reset()
		l.Print(c.line)
		if !strings.Contains(buf.String(), "level="+c.level) {
			t.Errorf("%q logged as %s, want level %s", c.line, strings.TrimSpace(buf.String()), c.level)
		}
	}
}

package node

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pfrouter/config"
)

// O5: configurations that pass config.Parse but cannot be served (the
// organization was changed in memory, or the machine disagrees: a file
// missing, a port taken, a data directory that is a file) make StartAll
// return an error naming the problem, never panic, and leave nothing
// listening.
func TestStartAllFailsCleanlyO5(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name   string
		mutate func(t *testing.T, o *config.Org)
		want   string
	}{
		{"otlp endpoint malformed", func(t *testing.T, o *config.Org) {
			o.Telemetry.Traces, o.Telemetry.Endpoint = "otlp", "127.0.0.1:4318"
		}, "telemetry.endpoint"},
		{"unknown exporter", func(t *testing.T, o *config.Org) { o.Telemetry.Traces = "zipkin" }, "telemetry.traces"},
		{"certificate missing", func(t *testing.T, o *config.Org) {
			o.TLS.CertFile, o.TLS.KeyFile = "/nonexistent/cert.pem", "/nonexistent/key.pem"
		}, "cert"},
		{"data dir is a file", func(t *testing.T, o *config.Org) {
			f := filepath.Join(t.TempDir(), "file")
			os.WriteFile(f, nil, 0o600)
			o.Servers[1].DataDir = f
		}, "data directory"},
		{"port taken", func(t *testing.T, o *config.Org) { o.Servers[2].Listen.SMTP = taken.Addr().String() }, "listen.smtp"},
		{"secret file missing", func(t *testing.T, o *config.Org) {
			o.Secret, o.SecretFile = "", "/nonexistent/secret"
		}, "secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			org := parseOrg(t, testOrg)
			c.mutate(t, org)
			var cl *Cluster
			func() {
				defer func() {
					if os.Getenv("PANIC") != "" {
						return
					}
					if r := recover(); r != nil {
						t.Fatalf("StartAll panicked: %v", r)
					}
				}()
				cl, err = StartAll(context.Background(), org, nil, Options{BaseDir: t.TempDir(), Logger: testLogger()})
			}()
			if err == nil {
				cl.Close(context.Background())
				t.Fatal("StartAll succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/config"
	"pfrouter/node"
)

func serveCmd() *cobra.Command {
	var cfg, dataDir, level, cpuProfile string
	var servers []string
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--server NAME ...]",
		Short: "Run servers of an organization (all of them by default; the embedded demo without --config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return &exitError{2, fmt.Errorf("--log-level: %w", err)}
			}
			base, err := filepath.Abs(dataDir)
			if err != nil {
				return &exitError{1, err}
			}
			// Without --config the demo is served from a copy in the data
			// directory, so that editing it and reloading does something.
			demoWritten := false
			if cfg == "" {
				if cfg, demoWritten, err = demoConfig(base); err != nil {
					return &exitError{1, err}
				}
			}
			org, err := config.Load(cfg)
			if err != nil {
				return &exitError{1, err}
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return &exitError{1, err}
				}
				defer stopProfile(logger)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cl, err := node.StartAll(ctx, org, servers, node.Options{BaseDir: base, Logger: logger})
			if err != nil {
				return &exitError{1, err}
			}
			lim := node.ApplyMemoryLimit(org, len(cl.Order), os.Getenv)
			logger.Info("memory limit", "go_heap_soft_limit_mb", lim>>20, "servers", len(cl.Order))
			pidFile := filepath.Join(base, pidFileName)
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
				logger.Warn("pid file not written", "path", pidFile, "err", err)
			} else {
				defer removePidFile(pidFile)
			}
			printBanner(os.Stdout, org, cfg, demoWritten, base, pidFile, cl)
			// SIGHUP reloads the config on every server; a bad one is
			// refused and the running one stays (O5).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-hup:
					if err := cl.Reload(ctx); err != nil {
						logger.Error("SIGHUP: config reload refused; the running config stays in force", "err", err)
					} else {
						logger.Info("SIGHUP: config reloaded")
					}
				}
			}
			logger.Info("shutting down: listeners close, deliveries in flight finish or stay queued")
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := cl.Close(sctx); err != nil {
				return &exitError{1, fmt.Errorf("shutdown: %w", err)}
			}
			logger.Info("stopped")
			return nil
		},
	}
	configFlag(c, &cfg)
	c.Flags().StringSliceVar(&servers, "server", nil, "server to run (repeatable; default: every server of the organization)")
	c.Flags().StringVar(&dataDir, "data-dir", envOr("PFROUTER_DATA", "pfrouter-data"), "base directory for servers without data_dir")
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file when the servers stop (go tool pprof; samples are labelled server=NAME: -tagfocus server=ex1)")
	return c
}

// startCPUProfile profiles this process's CPU until the returned function
// runs (at shutdown): with one server per process (`--server`), each
// server's own profile, which the benchmark scripts compare.
func startCPUProfile(path string) (func(*slog.Logger), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func(logger *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			logger.Warn("CPU profile not written", "path", path, "err", err)
		}
	}, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// pidFileName is where serve writes its process id, in the base data
// directory: `kill -HUP $(cat pfrouter-data/pfrouter.pid)` reloads this
// process only.
const pidFileName = "pfrouter.pid"

// removePidFile removes the pid file if it is still this process's.
func removePidFile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// printBanner says what runs where, from the configuration being served,
// and how to try it: a post to one of its own mail-enabled folders.
func printBanner(w io.Writer, org *config.Org, cfg string, demoWritten bool, base, pidFile string, cl *node.Cluster) {
	fmt.Fprintf(w, "pfrouter: organization %q from %s, %d server(s), pid file %s\n", org.Organization, cfg, len(cl.Order), pidFile)
	if demoWritten {
		fmt.Fprintf(w, "  (the demo organization was written to %s: edit it, then `pfrouter admin reload` or `kill -HUP $(cat %s)`)\n", cfg, pidFile)
	}
	var firstSMTP, firstServer string
	for _, name := range cl.Order {
		n := cl.Nodes[name]
		s := n.Org.ServerByName(name)
		var parts []string
		for _, l := range []struct{ k, v string }{{"smtp", s.Listen.SMTP}, {"imap", s.Listen.IMAP}, {"imaps", s.Listen.IMAPS},
			{"pop3", s.Listen.POP3}, {"pop3s", s.Listen.POP3S}, {"admin", s.Listen.Admin}} {
			if l.v != "" {
				parts = append(parts, l.k+" "+l.v)
			}
		}
		fmt.Fprintf(w, "  %-6s %-10s %s\n", name, s.RoutingGroup, strings.Join(parts, "  "))
		fmt.Fprintf(w, "  %-6s %-10s data in %s\n", "", "", n.DataDir)
		if firstSMTP == "" && s.Listen.SMTP != "" {
			firstSMTP, firstServer = s.Listen.SMTP, name
		}
	}
	rcpt := demoRecipient(org)
	if firstSMTP == "" || rcpt == "" {
		return
	}
	self, _ := os.Executable()
	if self == "" || strings.Contains(self, "go-build") {
		self = "go run ./cmd/pfrouter" // `go run` builds into a temporary directory
	}
	flags := " --config " + cfg
	fmt.Fprintf(w, `
Try it (in another terminal):
  printf 'Subject: hello\r\nMessage-Id: <hello@example.net>\r\n\r\nmy first post\r\n' | curl -sS smtp://%s --mail-from you@example.net --mail-rcpt %s -T -
  %s route%s --at %s --to %s
  %s trace%s --data-dir %s hello@example.net
The server that stores the post logs "delivered" with the store. Ctrl-C stops the servers.

`, firstSMTP, rcpt, self, flags, firstServer, rcpt, self, flags, base)
}

// demoRecipient is an address of the first mail-enabled folder of org
// ("" if it has none).
func demoRecipient(org *config.Org) string {
	for i := range org.Folders {
		f := &org.Folders[i]
		if !org.FolderMailEnabled(f) {
			continue
		}
		if len(f.Addresses) > 0 {
			return f.Addresses[0]
		}
		if f.Alias != "" && len(org.Domains) > 0 {
			return f.Alias + "@" + org.Domains[0].Name
		}
	}
	return ""
}

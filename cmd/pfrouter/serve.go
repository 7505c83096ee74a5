package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/node"
)

func serveCmd() *cobra.Command {
	var cfg, dataDir, level string
	var servers []string
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--server NAME ...]",
		Short: "Run servers of an organization (all of them by default; the embedded demo without --config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := loadOrg(cfg)
			if err != nil {
				return &exitError{1, err}
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return &exitError{2, fmt.Errorf("--log-level: %w", err)}
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			base, err := filepath.Abs(dataDir)
			if err != nil {
				return &exitError{1, err}
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cl, err := node.StartAll(ctx, org, servers, node.Options{BaseDir: base, Logger: logger})
			if err != nil {
				return &exitError{1, err}
			}
			printBanner(org.Organization, cfg, base, cl)
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
	c.Flags().StringVar(&cfg, "config", "", "organization file (default: the embedded demo organization)")
	c.Flags().StringSliceVar(&servers, "server", nil, "server to run (repeatable; default: every server of the organization)")
	c.Flags().StringVar(&dataDir, "data-dir", envOr("PFROUTER_DATA", "pfrouter-data"), "base directory for servers without data_dir")
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func printBanner(orgName, cfg, base string, cl *node.Cluster) {
	w := os.Stdout
	fmt.Fprintf(w, "pfrouter: organization %q running %d server(s); data under %s\n", orgName, len(cl.Order), base)
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
		if firstSMTP == "" && s.Listen.SMTP != "" {
			firstSMTP, firstServer = s.Listen.SMTP, name
		}
	}
	if firstSMTP == "" {
		return
	}
	conf := ""
	if cfg != "" {
		conf = " --config " + cfg
	}
	fmt.Fprintf(w, `
Try it (in another terminal):
  printf 'Subject: hello\r\n\r\nmy first post\r\n' | curl -sS smtp://%s --mail-from you@example.net --mail-rcpt sales@contoso.example -T -
  go run ./cmd/pfrouter route%s --at %s --to sales@contoso.example
The log below shows the post being routed, relayed and delivered. Ctrl-C stops the servers.

`, firstSMTP, conf, firstServer)
}

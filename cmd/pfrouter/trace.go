package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/admin"
	"pfrouter/tracking"
)

func traceCmd() *cobra.Command {
	var cfg, dataDir string
	var asJSON bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "trace MESSAGE-ID|QUEUE-ID",
		Short: "Follow a message across every server: each step in time order, with the rule, store, path and reason (rule O4, docs/rules.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := filepath.Abs(dataDir)
			if err != nil {
				return &exitError{1, err}
			}
			org, err := loadOrgIn(cfg, base)
			if err != nil {
				return &exitError{1, err}
			}
			var eps []tracking.Endpoint
			for i := range org.Servers {
				s := &org.Servers[i]
				if s.Listen.Admin == "" {
					continue
				}
				tok, err := admin.ResolveToken(org, org.DataDir(s, base))
				if err != nil {
					return &exitError{1, fmt.Errorf("server %s: %w", s.Name, err)}
				}
				eps = append(eps, tracking.Endpoint{Server: s.Name, URL: "http://" + s.Listen.Admin, Token: tok,
					TokenSource: admin.TokenSource(org, org.DataDir(s, base))})
			}
			if len(eps) == 0 {
				return &exitError{1, fmt.Errorf("no server of %s has listen.admin: nothing to ask", org.Path)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res := tracking.Collect(ctx, eps, args[0])
			if asJSON {
				if err := admin.WriteJSON(os.Stdout, res); err != nil {
					return err
				}
			} else {
				tracking.WriteText(os.Stdout, res)
			}
			switch {
			case len(res.Events) == 0 && len(res.Unreachable) > 0:
				return &exitError{3, fmt.Errorf("no server that answered knows %s, and %d of %d server(s) did not answer", args[0], len(res.Unreachable), len(eps))}
			case len(res.Events) == 0:
				return &exitError{1, fmt.Errorf("no server knows %s", args[0])}
			case len(res.Unreachable) > 0:
				return &exitError{3, fmt.Errorf("%d server(s) did not answer: the route may be incomplete", len(res.Unreachable))}
			}
			return nil
		},
	}
	configFlag(c, &cfg)
	c.Flags().StringVar(&dataDir, "data-dir", envOr("PFROUTER_DATA", "pfrouter-data"), "base data directory (where generated admin tokens are)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON for tools")
	c.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "overall time limit")
	return c
}

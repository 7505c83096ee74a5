package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/admin"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/referral"
	"pfrouter/routing"
)

func routeCmd() *cobra.Command {
	var cfg, at, to, now, from, user, folder string
	var asJSON, read bool
	c := &cobra.Command{
		Use:   "route --at SERVER (--to ADDRESS | --read --folder PATH)",
		Short: "Explain where a message for ADDRESS received by SERVER goes, or (--read) which replica a reader on SERVER is referred to, and why (rule O2, docs/rules.md)",
		Long: "Explain where a message for ADDRESS received by SERVER goes (step 1, step 2, path, cost), or (--read) which replica a reader on SERVER is referred to, and why (rule O2, docs/rules.md).\n" +
			"Exit codes: 0 the message would be delivered (here or after relaying), 4 it would wait in the queue (no reachable destination now), " +
			"5 it would end in a non-delivery report, 1 the config does not load, 2 usage error. --read exits 0 when it explains a referral.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := loadOrg(cfg)
			if err != nil {
				return &exitError{1, err}
			}
			t := time.Now()
			if now != "" {
				if t, err = time.Parse(time.RFC3339, now); err != nil {
					return &exitError{2, fmt.Errorf("--now: %w (want RFC 3339, e.g. 2026-01-02T15:04:05Z)", err)}
				}
			}
			if at == "" {
				at = org.Servers[0].Name
			} else if org.ServerByName(at) == nil {
				return &exitError{2, fmt.Errorf("--at: server %q is not defined in %s", at, org.Path)}
			}
			if read != (to == "") {
				return &exitError{2, fmt.Errorf("give either --to ADDRESS or --read --folder PATH")}
			}
			dir, err := directory.New(org, directory.Options{Now: func() time.Time { return t }})
			if err != nil {
				return &exitError{1, err}
			}
			ls, err := linkstate.FromConfig(org)
			if err != nil {
				return &exitError{1, err}
			}
			if read {
				return routeRead(dir.Snapshot(), ls.Graph(), at, folder, asJSON)
			}
			d := routing.Decide(dir.Snapshot(), ls.Graph(), routing.Params{
				MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit, Spread: org.Routing.Spread,
			}, routing.Input{At: at, Recipient: to, Sender: from, SenderUser: user, Now: t})
			if asJSON {
				if err := admin.WriteJSON(os.Stdout, d); err != nil {
					return err
				}
			} else {
				d.WriteText(os.Stdout)
			}
			return outcomeExit(d)
		},
	}
	configFlag(c, &cfg)
	c.Flags().StringVar(&at, "at", "", "server that receives the message (default: the first server)")
	c.Flags().StringVar(&to, "to", "", "recipient address")
	c.Flags().StringVar(&now, "now", "", "decide as of this time (RFC 3339; default now)")
	c.Flags().StringVar(&from, "from", "", "envelope sender (for accept_from/reject_from)")
	c.Flags().StringVar(&user, "user", "", "authenticated submitter (default: Anonymous)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	c.Flags().BoolVar(&read, "read", false, "explain the public folder referral of a reader on --at instead of mail routing")
	c.Flags().StringVar(&folder, "folder", "", "public folder path for --read, e.g. /Sales")
	return c
}

// routeRead explains which replica a reader on server at reads folder
// path from (issue 13).
func routeRead(snap *directory.Snapshot, g *linkstate.Graph, at, path string, asJSON bool) error {
	if path == "" {
		return &exitError{2, fmt.Errorf("--read needs --folder PATH")}
	}
	f := referral.FolderByPath(snap, path)
	if f == nil {
		return &exitError{2, fmt.Errorf("--folder: no public folder %q", path)}
	}
	d := referral.Decide(snap, g, at, f, nil)
	if asJSON {
		return admin.WriteJSON(os.Stdout, d)
	}
	d.WriteText(os.Stdout)
	return nil
}

func checkCmd() *cobra.Command {
	var cfg string
	c := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate an organization file; exit 1 with every problem listed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := loadOrg(cfg)
			if err != nil {
				return &exitError{1, err}
			}
			if _, err := directory.New(org, directory.Options{}); err != nil {
				return &exitError{1, err}
			}
			if _, err := linkstate.FromConfig(org); err != nil {
				return &exitError{1, err}
			}
			name := org.Path
			fmt.Printf("%s: ok: %d servers, %d routing groups, %d connectors, %d folders, %d users\n",
				name, len(org.Servers), len(org.RoutingGroups), len(org.Connectors), len(org.Folders), len(org.Users))
			return nil
		},
	}
	configFlag(c, &cfg)
	return c
}

// outcomeExit gives each routing outcome its exit code, so scripts can
// tell them apart without parsing the explanation.
func outcomeExit(d routing.Decision) error {
	switch d.Outcome {
	case routing.Deliver:
		return nil
	case routing.Queue:
		return &exitError{exitQueued, fmt.Errorf("%s would wait in the queue: %s", d.Recipient, d.Reason)}
	default:
		return &exitError{exitReport, fmt.Errorf("%s would end in a non-delivery report: %s %s", d.Recipient, d.Code, d.Reason)}
	}
}

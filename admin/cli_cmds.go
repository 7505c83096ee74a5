package admin

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/linkstate"
)

func (c *cli) setCmd() *cobra.Command {
	set := &cobra.Command{Use: "set", Short: "Change a runtime tunable"}
	set.AddCommand(&cobra.Command{
		Use: "store-min-age DURATION", Short: "Set store_min_age everywhere (R6), e.g. 24h; 0 disables the age check",
		Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			d, err := time.ParseDuration(args[0])
			if err != nil || d < 0 {
				return usage("store-min-age %q is not a duration >= 0 (such as 24h or 90m)", args[0])
			}
			got, err := cl.SetStoreMinAge(ctx, d)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, MinAge{StoreMinAge: formatDuration(got), Seconds: got.Seconds()}, func() {
				fmt.Fprintf(out, "store_min_age set to %s\n", formatDuration(got))
			})
		}),
	})
	return set
}

func (c *cli) getCmd() *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Show a runtime tunable"}
	get.AddCommand(&cobra.Command{
		Use: "store-min-age", Short: "Show store_min_age in force (R6)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			got, err := cl.StoreMinAge(ctx)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, MinAge{StoreMinAge: formatDuration(got), Seconds: got.Seconds()}, func() {
				fmt.Fprintf(out, "store_min_age %s\n", formatDuration(got))
			})
		}),
	})
	return get
}

func (c *cli) connectorCmd() *cobra.Command {
	cc := &cobra.Command{Use: "connector", Short: "Change a connector's cost or state (R9, R10); outbound connectors too"}
	show := func(out io.Writer, v any, line string) error {
		return c.emit(out, v, func() { fmt.Fprintln(out, line) })
	}
	cc.AddCommand(&cobra.Command{
		Use: "set-cost NAME COST", Short: "Set a connector's cost (1–100)", Args: cobra.ExactArgs(2),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			cost, err := strconv.Atoi(args[1])
			if err != nil {
				return usage("cost %q is not an integer 1–100", args[1])
			}
			got, err := cl.SetConnectorCost(ctx, args[0], cost)
			if err != nil {
				return classify(err)
			}
			return show(out, got, fmt.Sprintf("connector %s: cost %d", args[0], got.Cost))
		}),
	})
	for _, up := range []bool{true, false} {
		word := map[bool]string{true: "up", false: "down"}[up]
		cc.AddCommand(&cobra.Command{
			Use: word + " NAME", Short: "Mark a connector " + word, Args: cobra.ExactArgs(1),
			RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
				got, err := cl.SetConnectorState(ctx, args[0], up)
				if err != nil {
					return classify(err)
				}
				return show(out, got, fmt.Sprintf("connector %s: %s", args[0], word))
			}),
		})
	}
	return cc
}

func (c *cli) serverCmd() *cobra.Command {
	sc := &cobra.Command{Use: "server", Short: "Server operations"}
	sc.AddCommand(&cobra.Command{
		Use: "maintenance NAME on|off", Short: "Take a server down for maintenance, or back (R6b, R10)", Args: cobra.ExactArgs(2),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			var down bool
			switch strings.ToLower(args[1]) {
			case "on":
				down = true
			case "off":
			default:
				return usage("maintenance state %q is not on or off", args[1])
			}
			got, err := cl.SetServerMaintenance(ctx, args[0], down)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, got, func() {
				fmt.Fprintf(out, "server %s: maintenance %s\n", args[0], strings.ToLower(args[1]))
			})
		}),
	})
	return sc
}

func (c *cli) linkstateCmd() *cobra.Command {
	return &cobra.Command{
		Use: "linkstate", Short: "Show connectors and servers as this server sees them", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			ls, err := cl.LinkState(ctx)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, ls, func() { writeLinkState(out, ls) })
		}),
	}
}

func writeLinkState(out io.Writer, ls LinkState) {
	// Two numbers, two names: route explanations cite the table's version
	// ("link state vN"); the runtime-change version is what converged
	// servers agree on.
	fmt.Fprintf(out, "link-state version %d (this server's table; route explanations cite it)\n", ls.LinkStateVersion)
	fmt.Fprintf(out, "runtime changes   %d (the newest change this server holds; equal on servers that have converged)\n\n", ls.Version)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTOR\tBETWEEN\tCOST\tSTATE\tCAUSES\tCHANGED BY\tCHANGED AT")
	for _, c := range ls.Connectors {
		state, arrow := "down", "<->"
		if c.Up {
			state = "up"
		}
		if c.OneWay {
			arrow = "->"
		}
		at := ""
		if !c.ChangedAt.IsZero() {
			at = c.ChangedAt.UTC().Format(time.RFC3339)
		}
		between := c.A + " " + arrow + " " + c.B
		if c.Outbound {
			// An outbound connector joins no routing groups: it carries
			// its address spaces out from its source servers.
			between = "outbound " + strings.Join(c.AddressSpaces, ",") + " from " + strings.Join(c.Sources, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, between, c.Cost, state, causes(c.Causes), dash(c.ChangedBy), dash(at))
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tROUTING GROUP\tSTATE\tCAUSES")
	for _, s := range ls.Servers {
		state := "up"
		if s.Down {
			state = "down"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.RoutingGroup, state, causes(s.Causes))
	}
	tw.Flush()
}

// causes lists why a server or connector is down: every cause holds it
// down until its own writer clears it (hop-health, maintenance,
// member-death, config).
func causes(cs linkstate.Causes) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return dash(strings.Join(out, ","))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) storeCmd() *cobra.Command {
	sc := &cobra.Command{Use: "store", Short: "Store operations"}
	var req StoreRequest
	add := &cobra.Command{
		Use: "add", Short: "Add a store; its created time is now, so it stays young for store_min_age (R6)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.AddStore(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "store %s added on %s\n", req.Name, req.Server)
			})
		}),
	}
	f := add.Flags()
	f.StringVar(&req.Server, "server-name", "", "")
	f.StringVar(&req.Name, "name", "", "store name")
	f.StringVar(&req.Kind, "kind", "public", "public or mailbox")
	f.StringVar(&req.Hierarchy, "hierarchy", "", "hierarchy a public store holds")
	_ = f.MarkHidden("server-name")
	_ = add.MarkFlagRequired("name")
	_ = add.MarkFlagRequired("hierarchy")
	// --server is the persistent flag naming the server we talk to; the
	// store's server defaults to it.
	add.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if req.Server == "" {
			req.Server = c.server
		}
		if req.Server == "" {
			return usage("--server is required: the server that holds the new store")
		}
		return nil
	}
	sc.AddCommand(add)
	return sc
}

func (c *cli) replicaCmd() *cobra.Command {
	rc := &cobra.Command{Use: "replica", Short: "Replica operations"}
	var req ReplicaRequest
	add := &cobra.Command{
		Use: "add", Short: "Make a public store hold a replica of a folder", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.AddReplica(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "replica of %s%s added on store %s\n", req.Hierarchy, req.Folder, req.Store)
			})
		}),
	}
	f := add.Flags()
	f.StringVar(&req.Hierarchy, "hierarchy", "", "hierarchy name")
	f.StringVar(&req.Folder, "folder", "", "folder path, e.g. /Sales")
	f.StringVar(&req.Store, "store", "", "public store to hold the replica")
	for _, n := range []string{"hierarchy", "folder", "store"} {
		_ = add.MarkFlagRequired(n)
	}
	rc.AddCommand(add, c.replicaStatusCmd())
	return rc
}

func (c *cli) folderCmd() *cobra.Command {
	fc := &cobra.Command{Use: "folder", Short: "Public folder operations (every server and every replica follows)"}
	var req FolderRequest
	rename := &cobra.Command{
		Use: "rename", Short: "Rename a public folder and the folders below it, content included, everywhere", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.RenameFolder(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "folder %s%s renamed to %s\n", req.Hierarchy, req.Folder, req.To)
			})
		}),
	}
	del := &cobra.Command{
		Use: "delete", Short: "Delete a public folder and the folders below it, content included, everywhere, for good", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			req.To = ""
			if err := cl.DeleteFolder(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "folder %s%s deleted\n", req.Hierarchy, req.Folder)
			})
		}),
	}
	for _, cmd := range []*cobra.Command{rename, del} {
		f := cmd.Flags()
		f.StringVar(&req.Hierarchy, "hierarchy", "", "hierarchy name")
		f.StringVar(&req.Folder, "folder", "", "folder path, e.g. /Sales")
		_ = cmd.MarkFlagRequired("hierarchy")
		_ = cmd.MarkFlagRequired("folder")
	}
	rename.Flags().StringVar(&req.To, "to", "", "new folder path, e.g. /Revenue")
	_ = rename.MarkFlagRequired("to")
	fc.AddCommand(rename, del, c.permissionCmd())
	return fc
}

// permissionCmd changes one principal's role on a folder (R17) on every
// server.
func (c *cli) permissionCmd() *cobra.Command {
	pc := &cobra.Command{Use: "permission", Short: "Change who may post to and read a public folder (R17 roles), everywhere"}
	var req PermissionRequest
	set := &cobra.Command{
		Use: "set", Short: "Give a user, Anonymous or Default a role on a folder", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.SetFolderPermission(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "folder %s%s: %s is %s\n", req.Hierarchy, req.Folder, req.Principal, req.Role)
			})
		}),
	}
	remove := &cobra.Command{
		Use: "remove", Short: "Remove a principal's entry (a user then gets Default's role; Anonymous without an entry gets None)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			req.Role = ""
			if err := cl.RemoveFolderPermission(ctx, req); err != nil {
				return classify(err)
			}
			return c.emit(out, req, func() {
				fmt.Fprintf(out, "folder %s%s: entry of %s removed\n", req.Hierarchy, req.Folder, req.Principal)
			})
		}),
	}
	for _, cmd := range []*cobra.Command{set, remove} {
		f := cmd.Flags()
		f.StringVar(&req.Hierarchy, "hierarchy", "", "hierarchy name")
		f.StringVar(&req.Folder, "folder", "", "folder path, e.g. /Sales")
		f.StringVar(&req.Principal, "user", "", "user name, or Anonymous (unauthenticated senders) or Default (every other user)")
		for _, name := range []string{"hierarchy", "folder", "user"} {
			_ = cmd.MarkFlagRequired(name)
		}
	}
	set.Flags().StringVar(&req.Role, "role", "", "Owner, PublishingEditor, Editor, PublishingAuthor, Author, NonEditingAuthor, Reviewer, Contributor or None")
	_ = set.MarkFlagRequired("role")
	pc.AddCommand(set, remove)
	return pc
}

func (c *cli) routeCmd() *cobra.Command {
	var to, at, now string
	cmd := &cobra.Command{
		Use: "route", Short: "Explain where mail for a recipient goes and why (O2)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			var t time.Time
			if now != "" {
				var err error
				if t, err = time.Parse(time.RFC3339, now); err != nil {
					return usage("--now %q is not an RFC 3339 time", now)
				}
			}
			d, err := cl.Route(ctx, to, at, t)
			if err != nil {
				return classify(err)
			}
			return c.emit(out, d, func() { d.WriteText(out) })
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "recipient address")
	cmd.Flags().StringVar(&at, "at", "", "server that decides (default: the server asked)")
	cmd.Flags().StringVar(&now, "now", "", "decide as of this RFC 3339 time (default: now)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (c *cli) queueCmd() *cobra.Command {
	qc := &cobra.Command{Use: "queue", Short: "Inspect and act on the server's queue"}
	ok := func(out io.Writer, line string) error {
		return c.emit(out, OK{OK: true}, func() { fmt.Fprintln(out, line) })
	}
	qc.AddCommand(&cobra.Command{
		Use: "list", Short: "List queued messages", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			items, err := cl.QueueList(ctx)
			if err != nil {
				return classify(err)
			}
			if items == nil {
				items = []QueueItem{}
			}
			return c.emit(out, items, func() { writeQueue(out, items) })
		}),
	}, &cobra.Command{
		Use: "show ID", Short: "Show one queued message", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			it, err := cl.QueueShow(ctx, args[0])
			if err != nil {
				return classify(err)
			}
			return c.emit(out, it, func() { writeQueueItem(out, it) })
		}),
	}, &cobra.Command{
		Use: "retry ID", Short: "Retry one message now", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			if err := cl.QueueRetry(ctx, args[0]); err != nil {
				return classify(err)
			}
			return ok(out, "retrying "+args[0])
		}),
	}, &cobra.Command{
		Use: "delete ID", Short: "Delete a message from the queue (no non-delivery report)", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, args []string) error {
			if err := cl.QueueDelete(ctx, args[0]); err != nil {
				return classify(err)
			}
			return ok(out, "deleted "+args[0])
		}),
	}, &cobra.Command{
		Use: "flush", Short: "Retry every queued message now", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.QueueFlush(ctx); err != nil {
				return classify(err)
			}
			return ok(out, "retrying all queued messages")
		}),
	})
	return qc
}

func writeQueue(out io.Writer, items []QueueItem) {
	if len(items) == 0 {
		fmt.Fprintln(out, "queue is empty")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMESSAGE-ID\tFROM\tRECIPIENTS\tARRIVED\tSIZE")
	for _, it := range items {
		var rc []string
		for _, r := range it.Recipients {
			rc = append(rc, r.Addr+" ("+r.State+")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", it.ID, dash(it.MessageID), orNull(it.From), strings.Join(rc, ", "),
			it.Arrived.UTC().Format(time.RFC3339), it.Size)
	}
	tw.Flush()
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func writeQueueItem(out io.Writer, it QueueItem) {
	fmt.Fprintf(out, "id          %s\nmessage-id  %s\nfrom        %s\narrived     %s\nsize        %d\n\n",
		it.ID, dash(it.MessageID), orNull(it.From), it.Arrived.UTC().Format(time.RFC3339), it.Size)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPIENT\tSTATE\tNEXT ATTEMPT\tREASON")
	for _, r := range it.Recipients {
		next := "-"
		if !r.NextAttempt.IsZero() {
			next = r.NextAttempt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Addr, r.State, next, dash(r.Reason))
	}
	tw.Flush()
}

func (c *cli) reloadCmd() *cobra.Command {
	return &cobra.Command{
		Use: "reload", Short: "Make the server re-read its config; a bad config is refused and the old one kept (O5)", Args: cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, cl *Client, out io.Writer, _ []string) error {
			if err := cl.Reload(ctx); err != nil {
				return classify(err)
			}
			return c.emit(out, OK{OK: true}, func() { fmt.Fprintln(out, "configuration reloaded") })
		}),
	}
}

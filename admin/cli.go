package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"pfrouter/config"
	"pfrouter/examples"
)

// Exit codes of `pfrouter admin`.
const (
	ExitOK          = 0
	ExitRefused     = 1 // the server answered 4xx/5xx
	ExitUsage       = 2 // bad arguments or config
	ExitUnreachable = 3 // no answer from the server
)

// ExitError carries the exit code for an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error returned by Command's Execute to the process exit
// code: 0 for nil, the code an ExitError carries, an *APIError 1, a
// *ConnError 3, and anything else (cobra's argument and flag errors) 2.
func ExitCode(err error) int {
	var ee *ExitError
	var ae *APIError
	var ce *ConnError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &ae):
		return ExitRefused
	case errors.As(err, &ce):
		return ExitUnreachable
	}
	return ExitUsage
}

func usage(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// classify gives a client error its exit code.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ae *APIError
	var ce *ConnError
	switch {
	case errors.As(err, &ae):
		return &ExitError{Code: ExitRefused, Err: err}
	case errors.As(err, &ce):
		return &ExitError{Code: ExitUnreachable, Err: err}
	}
	return &ExitError{Code: ExitRefused, Err: err}
}

type cli struct {
	config, server, dataDir string
	json                    bool
	timeout                 time.Duration
}

// Command is the `pfrouter admin` subtree. Run it with Execute and exit
// with ExitCode(err).
func Command() *cobra.Command {
	c := &cli{}
	root := &cobra.Command{
		Use:   "admin",
		Short: "Operate running pfrouter servers through their admin API",
		Long: "Operate running pfrouter servers through their admin API: runtime tuning (O1), " +
			"link state, route explanations (O2), the queue and config reloads (O5).\n" +
			"The server's admin address comes from its listen.admin in the config; the token from " +
			"admin.token, admin.token_file or <data dir>/admin.token.\n" +
			"Exit codes: 0 ok, 1 server refused, 2 usage error, 3 server unreachable.",
	}
	dd := os.Getenv("PFROUTER_DATA")
	if dd == "" {
		dd = "./pfrouter-data"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.config, "config", os.Getenv("PFROUTER_CONFIG"),
		"organization file (env PFROUTER_CONFIG; default: the embedded demo organization, or the copy `serve` wrote into --data-dir)")
	pf.StringVar(&c.server, "server", "", "server to talk to (default: the first server of the organization)")
	pf.StringVar(&c.dataDir, "data-dir", dd, "base data directory (env PFROUTER_DATA); a server's own is <base>/<name> unless its data_dir is set")
	pf.BoolVar(&c.json, "json", false, "print JSON instead of tables")
	pf.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for the server")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage("%w", err) })

	root.AddCommand(c.setCmd(), c.getCmd(), c.connectorCmd(), c.serverCmd(), c.linkstateCmd(),
		c.storeCmd(), c.replicaCmd(), c.folderCmd(), c.routeCmd(), c.queueCmd(), c.reloadCmd())
	return root
}

// run wraps a subcommand body: usage errors stop printing the usage text
// once the arguments parsed, and the client comes from the config.
func (c *cli) run(fn func(ctx context.Context, cl *Client, out io.Writer, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		cl, err := c.client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
		defer cancel()
		return fn(ctx, cl, cmd.OutOrStdout(), args)
	}
}

// client resolves the target server's admin URL and token from the config.
func (c *cli) client() (*Client, error) {
	var org *config.Org
	var err error
	path := c.config
	if demo := examples.DemoFile(c.dataDir); path == "" {
		if _, err := os.Stat(demo); err == nil {
			path = demo // the copy `pfrouter serve` serves without --config
		}
	}
	if path != "" {
		org, err = config.Load(path)
	} else {
		org, err = config.Parse(examples.Contoso, examples.ContosoName, ".")
	}
	if err != nil {
		return nil, usage("%w", err)
	}
	if len(org.Servers) == 0 {
		return nil, usage("the organization has no servers")
	}
	srv := &org.Servers[0]
	if c.server != "" {
		if srv = org.ServerByName(c.server); srv == nil {
			return nil, usage("server %q is not in the organization", c.server)
		}
	}
	if srv.Listen.Admin == "" {
		return nil, usage("server %s has no listen.admin address", srv.Name)
	}
	host, port, err := net.SplitHostPort(srv.Listen.Admin)
	if err != nil {
		return nil, usage("server %s: listen.admin %q: %w", srv.Name, srv.Listen.Admin, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	tok, err := ResolveToken(org, org.DataDir(srv, c.dataDir))
	if err != nil {
		return nil, usage("%w", err)
	}
	by := "cli"
	if u, err := user.Current(); err == nil {
		by = "cli:" + u.Username
	}
	return &Client{BaseURL: "http://" + net.JoinHostPort(host, port), Token: tok, By: by,
		TokenSource: TokenSource(org, org.DataDir(srv, c.dataDir))}, nil
}

func (c *cli) emit(out io.Writer, v any, human func()) error {
	if c.json {
		return WriteJSON(out, v)
	}
	human()
	return nil
}

// WriteJSON prints v as indented JSON for people and scripts, without
// HTML escaping (addresses and Message-IDs keep their < and >).
func WriteJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

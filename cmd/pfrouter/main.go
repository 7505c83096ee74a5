// Command pfrouter runs and explains a pfrouter organization: `serve` starts
// its servers, `route` explains a routing decision, `check` validates a
// config, `trace` follows a message across servers and `admin` tunes a
// running organization. The commands are thin: each parses flags and calls
// the package that does the work.
//
// Exit codes, for every command: 0 success, 1 failure (the config does not
// load, a server refused), 2 usage error (unknown command, flag or
// argument), 3 a server could not be reached. `route` adds 4 (the message
// would wait in the queue) and 5 (it would end in a non-delivery report).
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"pfrouter/admin"
)

// Exit codes beyond admin's 0–3.
const (
	exitQueued = 4 // route: no reachable destination now; the message would wait
	exitReport = 5 // route: the message would end in a non-delivery report
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pfrouter:", err)
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// `pfrouter admin`: 1 refused, 2 usage, 3 unreachable; cobra's own
	// errors (unknown command, bad flag) are usage errors: 2.
	return admin.ExitCode(err)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "pfrouter",
		Short:         "Message routing for mail-enabled public folders, with SMTP, IMAP4 and POP3",
		Long:          "Message routing for mail-enabled public folders, with SMTP, IMAP4 and POP3.\nExit codes: 0 ok, 1 failed, 2 usage error, 3 server unreachable (route: 4 queued, 5 report).",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("pfrouter {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{2, err} })
	root.AddCommand(routeCmd(), checkCmd(), serveCmd(), traceCmd())
	for _, c := range extraCommands() {
		root.AddCommand(c)
	}
	strictUsage(root)
	return root
}

// strictUsage makes every usage mistake exit 2 with a message: a wrong
// number of arguments, and an unknown subcommand of a command group
// (cobra would print the group's help and exit 0).
func strictUsage(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictUsage(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{2, fmt.Errorf("unknown command %q for %q; the commands are: %s (see %s --help)",
					args[0], cmd.CommandPath(), strings.Join(subNames(cmd), ", "), cmd.CommandPath())}
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		return
	}
	if orig := c.Args; orig != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return &exitError{2, fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
			}
			return nil
		}
	}
}

func subNames(c *cobra.Command) []string {
	var out []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			out = append(out, s.Name())
		}
	}
	return out
}

// version is the module version and VCS revision the binary was built
// from (`go build` records them).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown build)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " commit " + rev + modified
	}
	return v + " " + bi.GoVersion
}

// Command pfrouter runs and explains a pfrouter organization: `serve` starts
// its servers, `route` explains a routing decision, `check` validates a
// config, `trace` follows a message across servers and `admin` tunes a
// running organization. The commands are thin: each parses flags and calls
// the package that does the work.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"pfrouter/admin"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := &cobra.Command{
		Use:           "pfrouter",
		Short:         "Message routing for mail-enabled public folders, with SMTP, IMAP4 and POP3",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(routeCmd(), checkCmd(), serveCmd(), traceCmd())
	for _, c := range extraCommands() {
		root.AddCommand(c)
	}
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pfrouter:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		// `pfrouter admin`: 1 refused, 2 usage, 3 unreachable (admin.ExitCode).
		os.Exit(admin.ExitCode(err))
	}
}

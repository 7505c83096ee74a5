package main

import (
	"github.com/spf13/cobra"

	"pfrouter/admin"
)

// extraCommands are the commands of the later layers: `admin` operates
// running servers through their admin API (docs/operations.md).
func extraCommands() []*cobra.Command { return []*cobra.Command{admin.Command()} }

package main

import "github.com/spf13/cobra"

// extraCommands are the commands of the later layers (serve, trace, admin).
func extraCommands() []*cobra.Command { return nil }

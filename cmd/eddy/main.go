// Command eddy is the CLI of the eddy stream processor. main only parses
// flags and wires constructors; every component is started from the RunE of
// one subcommand.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "eddy:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "eddy",
		Short: "eddy is a peer-to-peer stream processor for IoT data",
		Long: `eddy reads device readings from Kafka, decodes and enriches them, computes
event-time windows and work periods per device, and writes the results to
SQLite, MySQL or stdout.

Start here:  eddy dev --bounded     (embedded broker + Aberdeen data + SQLite)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionText(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	// Subcommands: one constructor each, in its own file.
	root.AddCommand(
		newDevCmd(),
		newRunCmd(),
		newReplayCmd(),
		newNodeCmd(),
		newCtlCmd(),
		newSavepointCmd(),
		newVerifyCmd(),
		newChaosCmd(),
	)
	requireSubcommands(root)
	return root
}

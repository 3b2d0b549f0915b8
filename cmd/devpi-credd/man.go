//go:build gendocs

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// buildCommands are commands only the build has (go build -tags gendocs):
// man pages are made at build time (make man, make dist), so that
// cobra/doc and its markdown renderer are in no shipped binary, whose
// package start-up every command would pay.
func (a *app) buildCommands() []*cobra.Command { return []*cobra.Command{a.newManCmd()} }

// newManCmd writes man pages for every command.
func (a *app) newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			r := a.newRootCmd()
			r.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "DEVPI-CREDD", Section: "1", Source: "devpi-credd " + version}
			if err := doc.GenManTree(r, header, args[0]); err != nil {
				return fmt.Errorf("writing man pages: %w", err)
			}
			fmt.Fprintf(a.stdout, "man pages written to %s\n", args[0])
			return nil
		},
	}
}

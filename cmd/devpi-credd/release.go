//go:build !gendocs

package main

import "github.com/spf13/cobra"

// buildCommands are commands only the build has (see man.go): none in a
// shipped binary.
func (a *app) buildCommands() []*cobra.Command { return nil }

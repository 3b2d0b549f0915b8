//go:build !linux

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) newSetupSystemCmd() *cobra.Command {
	return &cobra.Command{
		Use:                setupSystemUse,
		Short:              setupSystemShort,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return &exitError{exitFailed, errors.New("setup-system is Linux only: system mode runs the daemon from a systemd unit, as its own user")}
		},
	}
}

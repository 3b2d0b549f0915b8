// Command devpi-credd-keyring is the keyring command line that pip, uv and
// pdm run for every lookup (devpi-credd keyring-link points "keyring" at
// it): a fresh process each time, so it links only the daemon's client and
// the keyring protocol, not devpi-credd's command line, config reader or
// service manager, and starts at the floor of what a Go process can do.
package main

import (
	"os"

	"github.com/devpi-credd/devpi-credd/helper"
)

func main() { os.Exit(helper.KeyringMain(os.Args[1:], os.Stdout, os.Stderr, os.Getenv)) }

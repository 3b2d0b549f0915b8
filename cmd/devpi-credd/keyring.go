package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/job"
)

// keyringName reports whether the program was started under the name
// "keyring": then it is the keyring CLI that pip and uv run.
func keyringName(argv0 string) bool {
	base := strings.ToLower(filepath.Base(argv0))
	return base == "keyring" || base == "keyring.exe"
}

func (a *app) newKeyringCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keyring [--mode password|creds] [--output plain|json] get SERVICE [USERNAME]",
		Short: "Answer as the keyring command line that pip and uv run",
		Long: `Answer the keyring CLI protocol from the daemon: 'get SERVICE [USERNAME]'
prints a short-lived token for SERVICE (an index URL, host[:port] or
scheme://host[:port]); with --mode creds the user name too; with
--output json as JSON. A service devpi-credd does not know is exit 1 with no
output, so other tools' keyrings are not disturbed. 'set' and 'del' are
refused. The same happens when this binary is started as 'keyring' (see
'devpi-credd keyring-link').

With approval on ('devpi-credd approval'), a token that can upload needs a
one-time code: when the daemon wants one, it is asked for once on the
terminal (/dev/tty, never stdin or stdout, which are the calling tool's),
with 2 minutes to answer; a wrong code is refused, not asked again. Without
a terminal, one line on stderr says what to run instead, and the exit code
is 1.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := helper.KeyringMain(args, a.stdout, a.stderr, a.getenv); code != 0 {
				return &exitError{code, errQuiet}
			}
			return nil
		},
	}
}

// errQuiet carries an exit code whose message was already printed.
var errQuiet = errors.New("")

func (a *app) newKeyringLinkCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "keyring-link DIR",
		Short: "Make DIR/keyring run devpi-credd, and show the pip and uv settings that use it",
		Long: `Create DIR/keyring, a symbolic link to this devpi-credd, so that pip and uv
with keyring-provider "subprocess" get their credentials from the daemon.
DIR should be on PATH and outside any virtualenv: pip skips a keyring in its
own environment's scripts folder.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runKeyringLink(args[0], force) },
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing DIR/keyring")
	return cmd
}

func (a *app) runKeyringLink(dir string, force bool) error {
	self, err := a.selfPath()
	if err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	// The lean devpi-credd-keyring beside self, when installed: the link
	// runs for every lookup, and the lean binary starts at the floor.
	target := job.LeanHelper(self)
	link, created, err := helper.LinkKeyring(dir, target, force)
	var ee *helper.ExistsError
	switch {
	case errors.As(err, &ee) && ee.Target != "":
		return &exitError{exitFailed, fmt.Errorf("%s exists (it runs %s); pass --force to replace it", link, ee.Target)}
	case errors.As(err, &ee):
		return &exitError{exitFailed, fmt.Errorf("%s exists; pass --force to replace it", link)}
	case err != nil:
		return err
	case created:
		fmt.Fprintf(a.stdout, "created %s -> %s\n", link, target)
	default:
		fmt.Fprintf(a.stdout, "%s already runs %s\n", link, target)
	}
	if target == self {
		a.warnf("devpi-credd-keyring is not installed beside %s: the link runs devpi-credd itself, which starts slower", self)
	}
	return a.printKeyringSettings(dir)
}

// selfPath is what the link should point at: devpi-credd as found on PATH
// when that is this binary (a package manager's stable name, which stays
// valid across upgrades), else the running executable.
func (a *app) selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", err
	}
	for _, dir := range filepath.SplitList(a.getenv("PATH")) {
		p := filepath.Join(dir, "devpi-credd")
		if r, err := filepath.EvalSymlinks(p); err == nil && r == real && filepath.IsAbs(p) {
			return p, nil
		}
	}
	return real, nil
}

func (a *app) printKeyringSettings(dir string) error {
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "pyvenv.cfg")); err == nil {
		a.warnf("%s is a virtualenv's scripts folder: pip skips a keyring found in its own environment", dir)
	}
	onPath := false
	for _, p := range filepath.SplitList(a.getenv("PATH")) {
		if abs, err := filepath.Abs(p); err == nil && abs == dir {
			onPath = true
		}
	}
	if !onPath {
		a.warnf("%s is not on PATH: pip and uv look for 'keyring' there", dir)
	}
	fmt.Fprint(a.stdout, `
pip: pip config set global.keyring-provider subprocess
     (or PIP_KEYRING_PROVIDER=subprocess; no user name in the index URL is needed from pip 26.2 on)
uv:  keyring-provider = "subprocess" in uv.toml (or UV_KEYRING_PROVIDER=subprocess)
`)
	return nil
}

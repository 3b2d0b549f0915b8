//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/sysmode"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

type setupSystemOptions struct {
	user      string
	url       string
	tokenFile string
	name      string
	json      bool
	reset     bool
	root      string
	// Seams for tests: the effective uid, and the user database.
	euid   func() int
	lookup func(name string) (*user.User, error)
}

// systemUnit is the packages' system unit (packaging/systemd).
const systemUnit = "devpi-credd-system"

func (a *app) newSetupSystemCmd() *cobra.Command { return a.setupSystemCmd(a.runSetupSystem) }

// setupSystemCmd parses setup-system's flags for run: tests give one that
// sets the seams.
func (a *app) setupSystemCmd(run func(context.Context, setupSystemOptions) error) *cobra.Command {
	o := setupSystemOptions{euid: os.Geteuid, lookup: user.Lookup}
	cmd := &cobra.Command{
		Use:   setupSystemUse,
		Short: setupSystemShort,
		Long: `Set up system mode, as root, once for each user served (docs/service.md):
the daemon runs as its own user, ` + xdg.SystemUser + ` (the .deb and the .rpm create
it), from the ` + systemUnit + ` unit; it keeps the root tokens and the approval
secret and policy in ` + sysmode.StateDir() + `, which NAME can neither read
nor change, and serves NAME on ` + xdg.SystemSocket + `, where
NAME's devpi-credd and keyring helper find it when NAME runs no daemon.

It writes ` + sysmode.ConfigPath() + ` (root's, mode 0644; other servers
and settings are kept) with the sockets and NAME's uid in allow_uids, with
the session, lock and approval grants; stores the token of --token-file
(checked against the server's /+api, as 'token login' does) in the state
directory, the daemon user's, mode 0600; and makes the approval record,
` + sysmode.ApprovalPath() + `, when there is none: uploads then need a
one-time code, and none is minted until NAME enrols an authenticator with
'devpi-credd approval setup'. Run again, it changes nothing. An approval
record that is there is NAME's and kept, unless --reset-approval starts
over (someone else enrolled first, or the authenticator is lost).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.user, "user", "", "the user the daemon serves (allow_uids)")
	f.StringVar(&o.url, "url", "", "the devpi-server root URL whose token --token-file is")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the server's root token; - reads standard input")
	f.StringVar(&o.name, "name", "", "name of the server in the config (default: from the URL's host and port; without --url, the config's server of that name)")
	f.BoolVar(&o.reset, "reset-approval", false, "start approval over: replace an enrolled authenticator and its policy with the first record, so that NAME enrols again")
	f.BoolVar(&o.json, "json", false, "say what was done as JSON")
	f.StringVar(&o.root, "root", "", "prefix every path with DIR (tests)")
	_ = f.MarkHidden("root")
	return cmd
}

// setupSystemResult is what setup-system says it did, and what is left to
// do.
type setupSystemResult struct {
	User string `json:"user"`
	UID  int    `json:"uid"`
	*sysmode.Result
	Next []string `json:"next"`
}

func (a *app) runSetupSystem(ctx context.Context, o setupSystemOptions) error {
	switch {
	case o.user == "":
		return usageErrorf("--user NAME is needed: the user the daemon serves")
	case o.tokenFile == "" && (o.url != "" || o.name != ""):
		return usageErrorf("--url and --name need --token-file: the server's root token")
	case o.tokenFile != "" && o.url == "" && o.name == "":
		return usageErrorf("--token-file needs --url ROOT (or --name of a server in %s)", sysmode.ConfigPath())
	case o.name != "" && !store.ValidName(o.name):
		return usageErrorf("--name %q: use lower-case letters, digits, '_' and '-'", o.name)
	}
	var root *url.URL
	if o.url != "" {
		var err error
		if root, err = devpi.ParseRoot(o.url); err != nil {
			return &exitError{exitUsage, err}
		}
	}
	if o.euid() != 0 {
		return &exitError{exitFailed, errors.New("setup-system writes to /etc and /var/lib and hands files to the devpi-credd user: run it as root")}
	}
	served, err := lookupAccount(o.lookup, o.user)
	if err != nil {
		return &exitError{exitFailed, fmt.Errorf("%w: name the user to serve", err)}
	}
	daemon, err := lookupAccount(o.lookup, xdg.SystemUser)
	if err != nil {
		return &exitError{exitFailed, fmt.Errorf("%w, which the system daemon runs as: install the .deb or .rpm, which create it, or run systemd-sysusers with packaging/sysusers/devpi-credd.conf", err)}
	}
	switch served.UID {
	case 0:
		return usageErrorf("--user %s: root is served anyway; name the user to serve", o.user)
	case daemon.UID:
		return usageErrorf("--user %s: that is the daemon's own user; name the user to serve", o.user)
	}
	var srv *sysmode.Server
	if o.tokenFile != "" {
		t, err := a.readToken(tokenInput{file: o.tokenFile})
		if err != nil {
			return err
		}
		srv = &sysmode.Server{Name: o.name, URL: root, Token: t}
	}
	res, err := sysmode.Setup(sysmode.Options{Root: o.root, Daemon: daemon, Serve: served.UID, Server: srv, ResetApproval: o.reset,
		Check: func(root *url.URL, t *token.Token) error {
			_, err := a.tokenClient(ctx, root, t)
			return err
		}})
	if err != nil {
		return err
	}
	out := setupSystemResult{User: o.user, UID: served.UID, Result: res, Next: setupSystemNext(o, res)}
	if o.json {
		return printJSON(a, out)
	}
	changed := false
	for _, c := range res.Files {
		if c.Action != sysmode.Unchanged {
			fmt.Fprintf(a.stdout, "%s %s\n", c.Action, c.Path)
			changed = true
		}
	}
	if !changed {
		fmt.Fprintf(a.stdout, "nothing to change: the system daemon serves %s (uid %d)\n", o.user, served.UID)
	}
	fmt.Fprintln(a.stdout, "next:")
	for _, step := range out.Next {
		fmt.Fprintf(a.stdout, "  %s\n", step)
	}
	return nil
}

// setupSystemNext is what is left to do, in order, as commands with who
// runs them.
func setupSystemNext(o setupSystemOptions, res *sysmode.Result) []string {
	var next []string
	if slices.ContainsFunc(res.Files, func(c sysmode.Change) bool {
		return (c.Path == sysmode.ConfigPath() || c.Path == sysmode.ApprovalPath()) && c.Action != sysmode.Unchanged
	}) {
		next = append(next, "systemctl try-restart "+systemUnit+"    # as root: a daemon that runs reads its sockets and approval record at start")
	}
	next = append(next, "systemctl enable --now "+systemUnit+"    # as root")
	next = append(next, "devpi-credd approval setup    # as "+o.user+", at once: the first to enrol holds the authenticator; nothing uploads until then")
	if o.tokenFile != "" && o.tokenFile != "-" {
		next = append(next, "shred -u "+o.tokenFile+"    # the daemon has its own copy")
	}
	return next
}

// lookupAccount finds a user's uid and primary gid.
func lookupAccount(lookup func(string) (*user.User, error), name string) (sysmode.Account, error) {
	u, err := lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return sysmode.Account{}, fmt.Errorf("there is no user %s", name)
		}
		return sysmode.Account{}, fmt.Errorf("looking up user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return sysmode.Account{}, fmt.Errorf("user %s has uid %q and gid %q, not numbers", name, u.Uid, u.Gid)
	}
	return sysmode.Account{UID: uid, GID: gid}, nil
}

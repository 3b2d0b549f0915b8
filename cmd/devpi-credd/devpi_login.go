package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/localapi"
)

type devpiLoginOptions struct {
	server  string
	ttl     string
	daemon  daemonFlags
	approve bool
	in      secretInput
}

func (a *app) newDevpiLoginCmd() *cobra.Command {
	var o devpiLoginOptions
	cmd := &cobra.Command{
		Use:   "devpi-login [--server NAME] [--ttl 10h] [--approve | --code-stdin]",
		Short: "Log devpi-client in with a session token from the daemon",
		Long: `Ask the daemon for a session token (limited by its expiry and the server's
configured restrictions) and write it into devpi-client's auth.json for that
server, as devpi-tokens' token-login does: the user is the token's user,
other entries are kept, the file is 0600 and replaced atomically. devpi
upload, devpi list and the rest then work without a password.

With devpi_client = true in the server's config section, the running daemon
renews that entry before it expires.

With approval on ('devpi-credd approval'), a session without a one-time
code can read and upload test results only: no uploads, no index or delete
writes. --approve asks for a code on the terminal (--code-stdin reads it
from standard input) and gets a session that can do everything, living as
long as an approved upload token at most (2 minutes by default).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDevpiLogin(cmd.Context(), o) },
	}
	cmd.Flags().StringVar(&o.server, "server", "", "the daemon's server name (default: devpi-client's current server, or the only one)")
	cmd.Flags().StringVar(&o.ttl, "ttl", "10h", "lifetime of the session token (at most the daemon's max_session_ttl)")
	cmd.Flags().BoolVar(&o.approve, "approve", false, "with approval on: ask for a one-time code on the terminal, for a session that can upload")
	o.in.registerCode(cmd, codeStdinOne)
	o.daemon.register(cmd)
	return cmd
}

func (a *app) runDevpiLogin(ctx context.Context, o devpiLoginOptions) error {
	if o.approve && o.in.codeStdin {
		return usageErrorf("give --approve (the code from the terminal) or --code-stdin, not both")
	}
	client := a.client(o.daemon)
	st, err := client.Status(ctx)
	if err != nil {
		return daemonError(err)
	}
	srv, err := a.chooseDaemonServer(st, o.server)
	if err != nil {
		return err
	}
	root, err := devpi.ParseRoot(srv.URL)
	if err != nil {
		return err
	}
	cd, err := a.clientDir()
	if err != nil {
		return err
	}
	if err := cd.CanLogin(root.String()); err != nil {
		return &exitError{exitFailed, err}
	}
	req := localapi.CredentialsRequest{URL: root.String(), TTL: o.ttl, Session: true}
	if o.approve || o.in.codeStdin {
		prompt := "devpi-credd: approve a devpi-client session that can upload to " + root.String() + ": one-time code: "
		if req.Code, err = a.oneTimeCode(ctx, o.in, prompt); err != nil {
			return err
		}
	}
	c, err := a.approver().Credentials(ctx, client, req)
	if err != nil {
		return daemonError(err)
	}
	if err := cd.Login(root.String(), devpi.Auth{User: c.Username, Secret: c.Password}); err != nil {
		return &exitError{exitFailed, err}
	}
	fmt.Fprintf(a.stdout, "devpi-client logged in as '%s' at %s until %s (session token from %s-%s)\n",
		c.Username, root, time.Unix(c.Expires, 0).Local().Format(localTime), c.Username, c.TokenID)
	if req.Code == "" && st.Approval != nil && st.Approval.Uploads {
		a.infof("approval is on: this session cannot upload; 'devpi-credd devpi-login --approve' logs in with one that can")
	}
	return nil
}

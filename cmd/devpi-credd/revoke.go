package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
)

func (a *app) newRevokeCmd() *cobra.Command {
	var server, cfgFlag string
	var yes bool
	cmd := &cobra.Command{
		Use:   "revoke [--server NAME] [--yes]",
		Short: "Delete the long-lived token on the server and here: every token derived from it dies",
		Long: `Revoke a server's long-lived token in one step: delete it on devpi-server
(needs a login session: 'devpi-credd login', or devpi-client's), which
invalidates every token ever derived from it, and remove it from this
machine's store. A running daemon notices and refuses to mint for that
server until a new token is stored with 'devpi-credd token login'.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runRevoke(cmd.Context(), server, cfgFlag, yes) },
	}
	cmd.Flags().StringVar(&server, "server", "", "the config's server (default: devpi-client's, or the only one)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask")
	configFlag(cmd, &cfgFlag)
	return cmd
}

func (a *app) runRevoke(ctx context.Context, server, cfgFlag string, yes bool) error {
	cfg, err := config.Load(a.configPath(cfgFlag), a.getenv)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	srv, err := a.chooseServer(cfg, server)
	if err != nil {
		return err
	}
	b := srv.Backend()
	root, err := b.Load()
	if err != nil {
		return err
	}
	auth, err := a.session(srv.URL)
	if err != nil {
		return fmt.Errorf("revoke needs a login session on %s with the right to delete %s's tokens: %w", srv.URL, root.User(), err)
	}
	q := fmt.Sprintf("Delete token %s-%s on %s? Every token derived from it stops working.", root.User(), root.ID(), srv.URL)
	if err := a.confirm(yes, q, "--yes"); err != nil {
		return err
	}
	c := a.newClient(srv.URL)
	c.Auth = &auth
	msg, err := c.DeleteToken(ctx, root.User(), root.ID())
	if err != nil && !devpi.IsStatus(err, 404) {
		return sessionHint(err, srv.URL)
	}
	if err != nil {
		msg = fmt.Sprintf("token %s was already gone on the server", root.ID())
	}
	if err := b.Delete(); err != nil {
		return fmt.Errorf("%s, but removing it here failed: %w", msg, err)
	}
	fmt.Fprintf(a.stdout, "%s; removed from %s. Store a new one with 'devpi-credd token login'.\n", msg, b)
	return nil
}

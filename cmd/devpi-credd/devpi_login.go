package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/localapi"
)

type devpiLoginOptions struct {
	server string
	ttl    string
	daemon daemonFlags
}

func (a *app) newDevpiLoginCmd() *cobra.Command {
	var o devpiLoginOptions
	cmd := &cobra.Command{
		Use:   "devpi-login [--server NAME] [--ttl 10h]",
		Short: "Log devpi-client in with a session token from the daemon",
		Long: `Ask the daemon for a session token (limited by its expiry and the server's
configured restrictions) and write it into devpi-client's auth.json for that
server, as devpi-tokens' token-login does: the user is the token's user,
other entries are kept, the file is 0600 and replaced atomically. devpi
upload, devpi list and the rest then work without a password.

With devpi_client = true in the server's config section, the running daemon
renews that entry before it expires.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDevpiLogin(cmd.Context(), o) },
	}
	cmd.Flags().StringVar(&o.server, "server", "", "the daemon's server name (default: devpi-client's current server, or the only one)")
	cmd.Flags().StringVar(&o.ttl, "ttl", "10h", "lifetime of the session token (at most the daemon's max_session_ttl)")
	o.daemon.register(cmd)
	return cmd
}

func (a *app) runDevpiLogin(ctx context.Context, o devpiLoginOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	client := a.client(o.daemon)
	st, err := client.Status(ctx)
	if err != nil {
		return daemonError(err)
	}
	srv, err := a.pickServer(st, o.server)
	if err != nil {
		return err
	}
	root, err := devpi.ParseRoot(srv.URL)
	if err != nil {
		return err
	}
	if _, _, err := a.devpiClientFor(root); err != nil {
		return err
	}
	c, err := client.Credentials(ctx, localapi.CredentialsRequest{URL: root.String(), TTL: o.ttl, Session: true})
	if err != nil {
		return daemonError(err)
	}
	if err := a.devpiClientLogin(root, devpi.Auth{User: c.Username, Secret: c.Password}); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "devpi-client logged in as '%s' at %s until %s (session token from %s-%s)\n",
		c.Username, root, time.Unix(c.Expires, 0).Local().Format(localTime), c.Username, c.TokenID)
	return nil
}

// pickServer finds the server for devpi-login: the one named, else the
// one devpi-client uses, else the only one there is.
func (a *app) pickServer(st *localapi.Status, name string) (*localapi.ServerStatus, error) {
	var names []string
	for i := range st.Servers {
		if name != "" && st.Servers[i].Name == name {
			return &st.Servers[i], nil
		}
		names = append(names, st.Servers[i].Name)
	}
	if name != "" {
		return nil, usageErrorf("the daemon has no server %q (it has: %s)", name, strings.Join(names, ", "))
	}
	if cd, err := a.clientDir(); err == nil {
		if cur, err := cd.Root(); err == nil && cur != "" {
			cu, _ := url.Parse(cur)
			for i := range st.Servers {
				if su, err := url.Parse(st.Servers[i].URL); err == nil && cu != nil && su.String() == cu.String() {
					return &st.Servers[i], nil
				}
			}
		}
	}
	if len(st.Servers) == 1 {
		return &st.Servers[0], nil
	}
	return nil, usageErrorf("which server? pass --server NAME (the daemon has: %s)", strings.Join(names, ", "))
}

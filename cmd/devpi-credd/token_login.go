package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

type tokenLoginOptions struct {
	in          tokenInput
	url         string
	name        string
	config      string
	keychain    bool
	devpiClient bool
}

// storeRootToken keeps t as the long-lived token for root where the daemon
// finds it: it makes sure the config names the server (appending a
// [servers.NAME] section if needed) and saves the token in that server's
// store. It returns where, in words.
func (a *app) storeRootToken(o tokenLoginOptions, root *url.URL, name string, t *token.Token) (string, error) {
	path := a.configPath(o.config)
	got, added, err := config.EnsureServer(path, name, root, o.keychain, a.getenv)
	if err != nil {
		return "", &exitError{exitFailed, err}
	}
	cfg, err := config.Load(path, a.getenv)
	if err != nil {
		return "", &exitError{exitFailed, err}
	}
	srv, _ := cfg.Server(got)
	if o.keychain && !srv.Keychain {
		a.warnf("the config's server %s keeps its token in %s, not the keychain: storing it there", got, srv.TokenFile)
	}
	b := srv.Backend()
	if err := b.Save(t); err != nil {
		return "", err
	}
	where := fmt.Sprintf("for server '%s' in %s", got, b)
	if added {
		where += fmt.Sprintf(" (added to %s)", path)
	}
	return where, nil
}

// tokenClient is a client of root logged in with t, once root's /+api has
// said that it takes t as its user's token: what a token is checked with
// before it is stored as a root token.
func (a *app) tokenClient(ctx context.Context, root *url.URL, t *token.Token) (*devpi.Client, error) {
	c := a.newClient(root)
	c.Auth = &devpi.Auth{User: t.User(), Secret: t.Reveal()}
	info, err := c.API(ctx)
	if err != nil {
		return nil, err
	}
	if user, ok := info.AuthOK(); !ok || user != t.User() {
		return nil, &exitError{exitFailed, fmt.Errorf("login with token %s-%s at %s failed: the server's auth status is %q", t.User(), t.ID(), root, info.AuthState())}
	}
	return c, nil
}

func (a *app) newTokenLoginCmd() *cobra.Command {
	var o tokenLoginOptions
	cmd := &cobra.Command{
		Use:   "login (-f FILE | --token TOKEN) [--url ROOT] [--name NAME] [--devpi-client]",
		Short: "Check a token against the server and keep it as this machine's long-lived token",
		Long: `Check the token against devpi-server's /+api (the server must accept it as
its user) and store it as this machine's long-lived token for that server:
a file with mode 0600 (or the OS keychain with --keychain), named in the
config, where devpi-credd's daemon derives short-lived tokens from it. The
server is added to the config if it is not there yet.
With --devpi-client, also log devpi-client in with it, as devpi-tokens'
token-login does.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runTokenLogin(cmd.Context(), o) },
	}
	o.in.register(cmd.Flags())
	urlFlag(cmd.Flags(), &o.url)
	cmd.Flags().StringVar(&o.name, "name", "", "name for this server in devpi-credd's config (default: from the URL's host and port)")
	cmd.Flags().BoolVar(&o.keychain, "keychain", false, "keep the token in the OS keychain instead of a file")
	configFlag(cmd, &o.config)
	cmd.Flags().BoolVar(&o.devpiClient, "devpi-client", false, "also log devpi-client in with the token (writes its auth.json)")
	return cmd
}

func (a *app) runTokenLogin(ctx context.Context, o tokenLoginOptions) error {
	t, err := a.readToken(o.in)
	if err != nil {
		return err
	}
	root, err := a.serverRoot(o.url)
	if err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name = store.ServerName(root)
	} else if !store.ValidName(name) {
		return usageErrorf("--name %q: use lower-case letters, digits, '_' and '-'", name)
	}
	var cd devpi.StateDir
	if o.devpiClient {
		// Refuse before anything is stored.
		if cd, err = a.clientDir(); err != nil {
			return err
		}
		if err := cd.CanLogin(root.String()); err != nil {
			return &exitError{exitFailed, fmt.Errorf("%w, or leave out --devpi-client", err)}
		}
	}
	c, err := a.tokenClient(ctx, root, t)
	if err != nil {
		return err
	}
	where, err := a.storeRootToken(o, root, name, t)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "logged in '%s' at %s with token %s; stored %s\n", t.User(), root, t.ID(), where)
	if o.devpiClient {
		if err := cd.Login(root.String(), *c.Auth); err != nil {
			return &exitError{exitFailed, err}
		}
		fmt.Fprintf(a.stdout, "devpi-client logged in as '%s' at %s\n", t.User(), root)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/msg"
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
	// seal keeps the token in the sealed store, with the passphrase from
	// the terminal or secrets.passphraseStdin.
	seal    bool
	secrets secretInput
}

// check refuses flags that do not go together, before anything is read.
func (o tokenLoginOptions) check() error {
	switch {
	case o.secrets.passphraseStdin && !o.seal:
		return usageErrorf("--passphrase-stdin goes with --seal")
	case o.seal && o.keychain:
		return usageErrorf("give --seal or --keychain, not both")
	case o.seal && o.devpiClient:
		return usageErrorf("--devpi-client would write the token into devpi-client's auth.json in the clear: with --seal, log devpi-client in with 'devpi-credd devpi-login'")
	case o.secrets.passphraseStdin && o.in.file == "-":
		return usageErrorf("--passphrase-stdin and -f - both read standard input: give the token in a file, or type it at the prompt")
	}
	return nil
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
		Use:   "login (-f FILE | --token TOKEN) [--url ROOT] [--name NAME] [--keychain | --seal [--passphrase-stdin]] [--devpi-client]",
		Short: "Check a token against the server and keep it as this machine's long-lived token",
		Long: `Check the token against devpi-server's /+api (the server must accept it as
its user) and store it as this machine's long-lived token for that server:
a file with mode 0600 (or the OS keychain with --keychain), named in the
config, where devpi-credd's daemon derives short-lived tokens from it. The
server is added to the config if it is not there yet.
With --devpi-client, also log devpi-client in with it, as devpi-tokens'
token-login does.

With --seal, the token goes into the sealed store instead
($XDG_STATE_HOME/devpi-credd/sealed.age): encrypted with a passphrase (age's
scrypt), which it asks for on the terminal (twice for a new store), or
reads from the first line of standard input with --passphrase-stdin. The
store keeps the tokens of every server and the approval secret; the daemon
starts with it closed and opens it into its memory only on 'devpi-credd
unlock', so that no program of yours finds a long-lived token in a file. A
plain token file of the server is removed (revoke that token if the file
was ever copied). A running daemon is unlocked with the passphrase, so that
it opens the new store at once.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runTokenLogin(cmd.Context(), o) },
	}
	o.in.register(cmd.Flags())
	urlFlag(cmd.Flags(), &o.url)
	cmd.Flags().StringVar(&o.name, "name", "", "name for this server in devpi-credd's config (default: from the URL's host and port)")
	cmd.Flags().BoolVar(&o.keychain, "keychain", false, "keep the token in the OS keychain instead of a file")
	configFlag(cmd, &o.config)
	cmd.Flags().BoolVar(&o.devpiClient, "devpi-client", false, "also log devpi-client in with the token (writes its auth.json)")
	cmd.Flags().BoolVar(&o.seal, "seal", false, "keep the token in the sealed store, encrypted with a passphrase, which only the daemon opens")
	o.secrets.registerPassphrase(cmd)
	return cmd
}

func (a *app) runTokenLogin(ctx context.Context, o tokenLoginOptions) error {
	if err := o.check(); err != nil {
		return err
	}
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
	var where, pass string
	if o.seal {
		where, pass, err = a.sealRootToken(o, root, name, t)
	} else {
		where, err = a.storeRootToken(o, root, name, t)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "logged in '%s' at %s with token %s; stored %s\n", t.User(), root, t.ID(), where)
	if o.seal {
		a.openSealedInDaemon(ctx, o, pass)
	}
	if o.devpiClient {
		if err := cd.Login(root.String(), *c.Auth); err != nil {
			return &exitError{exitFailed, err}
		}
		fmt.Fprintf(a.stdout, "devpi-client logged in as '%s' at %s\n", t.User(), root)
	}
	return nil
}

// sealRootToken keeps t as the long-lived token for root in the sealed
// store, with what it held before (which needs its passphrase), makes sure
// the config names the server, and removes a plain token file of that
// server, which a program of the user could read. It returns where, in
// words, and the passphrase, for the daemon.
func (a *app) sealRootToken(o tokenLoginOptions, root *url.URL, name string, t *token.Token) (where, pass string, err error) {
	path := a.configPath(o.config)
	got, added, err := config.EnsureServer(path, name, root, false, a.getenv)
	if err != nil {
		return "", "", &exitError{exitFailed, err}
	}
	cfg, err := config.Load(path, a.getenv)
	if err != nil {
		return "", "", &exitError{exitFailed, err}
	}
	srv, _ := cfg.Server(got)
	s := sealedStore(a.getenv)
	s.WorkFactor = a.sealWorkFactor
	exists, err := s.Exists()
	if err != nil {
		return "", "", &exitError{exitFailed, err}
	}
	prompt := "passphrase of the sealed store: "
	if !exists {
		prompt = "passphrase for the new sealed store: "
	}
	if pass, err = a.passphrase(o.secrets, prompt, !exists); err != nil {
		return "", "", err
	}
	v := &store.Vault{}
	if exists {
		if v, err = s.Open([]byte(pass)); err != nil {
			return "", "", &exitError{exitFailed, err}
		}
	}
	defer v.Wipe()
	if v.Tokens == nil {
		v.Tokens = map[string]string{}
	}
	v.Tokens[got] = t.Reveal()
	if err := s.Seal([]byte(pass), v); err != nil {
		return "", "", &exitError{exitFailed, err}
	}
	if srv.Keychain {
		a.warnf("the config's server %s names the keychain: the sealed store's token wins; remove the keychain's entry and 'keychain = true' from %s", got, path)
	} else {
		a.removePlainToken(store.File{Path: srv.TokenFile}, t)
	}
	where = fmt.Sprintf("for server '%s' in the sealed store %s", got, s)
	if added {
		where += fmt.Sprintf(" (added to %s)", path)
	}
	return where, pass, nil
}

// removePlainToken removes a token file that sealing makes stale, and says
// so: what was in it may have been copied by whatever read it.
func (a *app) removePlainToken(f store.File, sealed *token.Token) {
	old, lerr := f.Load()
	if err := f.Delete(); errors.Is(err, store.ErrNotFound) {
		return
	} else if err != nil {
		a.warnf("the plain token file %s is left: %v; remove it", f, err)
		return
	}
	switch {
	case lerr != nil:
		a.infof("removed the plain token file %s: if it was ever copied, revoke the token it held", f)
	case old.ID() == sealed.ID() && old.User() == sealed.User():
		a.infof("removed the plain token file %s, which held the token now sealed: if it was ever copied, revoke that token and seal a new one", f)
	default:
		a.infof("removed the plain token file %s: if it was ever copied, revoke its token %s-%s ('devpi-credd token delete -u %s %s')", f, old.User(), old.ID(), old.User(), old.ID())
	}
}

// openSealedInDaemon unlocks a running daemon with the passphrase just
// used, so that it opens the new store now rather than at its next unlock.
func (a *app) openSealedInDaemon(ctx context.Context, o tokenLoginOptions, pass string) {
	_, err := a.daemonClient("", o.config).Unlock(ctx, pass)
	switch {
	case errors.Is(err, helper.ErrNotRunning):
		a.infof("the daemon is not running: 'devpi-credd serve' starts it with the store closed; 'devpi-credd unlock' opens it")
	case err != nil:
		a.warnf("the running daemon did not open the sealed store: %s; run 'devpi-credd unlock'", msg.OneLine(err.Error()))
	default:
		a.infof("the running daemon opened the sealed store")
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

// sessions is devpi-credd's own session state, in devpi-client's format.
func (a *app) sessions() devpi.StateDir { return devpi.StateDir{Dir: xdg.StateDir(a.getenv)} }

func (a *app) clientDir() (devpi.StateDir, error) { return devpi.ClientDir(a.getenv) }

// serverRoot picks the server: --url, else the one devpi-credd last logged
// in to, else devpi-client's current server.
func (a *app) serverRoot(flag string) (*url.URL, error) {
	if flag != "" {
		u, err := devpi.ParseRoot(flag)
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		return u, nil
	}
	raw, err := a.sessions().Root()
	if err != nil {
		return nil, err
	}
	if raw == "" {
		cd, err := a.clientDir()
		if err != nil {
			return nil, err
		}
		if raw, err = cd.Root(); err != nil {
			return nil, err
		}
	}
	if raw == "" {
		return nil, usageErrorf("no server given: pass --url ROOT (or 'devpi use ROOT' for devpi-client)")
	}
	return devpi.ParseRoot(raw)
}

// session finds a login session for root: devpi-credd's own first, then
// devpi-client's (see devpi.FindSession).
func (a *app) session(root *url.URL) (devpi.Auth, error) {
	dirs := []devpi.StateDir{a.sessions()}
	if cd, err := a.clientDir(); err == nil {
		dirs = append(dirs, cd)
	}
	auth, ok, err := devpi.FindSession(root.String(), a.getenv, dirs...)
	if err != nil || ok {
		return auth, err
	}
	return devpi.Auth{}, &exitError{exitFailed, fmt.Errorf("not logged in at %s: run 'devpi-credd login --url %s USER'", root, root)}
}

// newClient returns a devpi client for root, without credentials.
func (a *app) newClient(root *url.URL) *devpi.Client {
	return &devpi.Client{Root: root, HTTP: a.http, UserAgent: "devpi-credd/" + version}
}

// sessionClient returns a client for the server picked by urlFlag, logged in
// with a session, and the user to act for: user, else the session's.
func (a *app) sessionClient(urlFlag, user string) (*devpi.Client, string, error) {
	root, err := a.serverRoot(urlFlag)
	if err != nil {
		return nil, "", err
	}
	auth, err := a.session(root)
	if err != nil {
		return nil, "", err
	}
	c := a.newClient(root)
	c.Auth = &auth
	if user == "" {
		user = auth.User
	}
	return c, user, nil
}

// urlFlag registers --url, which every command that talks to a server has.
func urlFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "url", "", "devpi-server root URL (default: the current server)")
}

// sessionHint adds what to do when a stored session no longer works.
func sessionHint(err error, root *url.URL) error {
	if devpi.IsStatus(err, 401) {
		return fmt.Errorf("%w (session expired? run 'devpi-credd login --url %s USER')", err, root)
	}
	return err
}

type loginOptions struct {
	url           string
	user          string
	passwordStdin bool
}

func (a *app) newLoginCmd() *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "login [--url ROOT] USER [--password-stdin]",
		Short: "Log in to devpi-server with a password, for the token commands",
		Long: `Log in to devpi-server with a user's password. The session (valid for the
server's login lifetime, 10 hours by default) is kept in devpi-credd's state
directory with mode 0600 and used by 'token create', 'list' and 'delete'.
The password is read from the terminal, or from the first line of standard
input with --password-stdin; never from a flag.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.user = args[0]
			return a.runLogin(cmd.Context(), o)
		},
	}
	urlFlag(cmd.Flags(), &o.url)
	cmd.Flags().BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func (a *app) readPasswordFor(o loginOptions, root *url.URL) (string, error) {
	if o.passwordStdin {
		line, err := a.stdinLines.ReadString('\n')
		if err != nil && line == "" {
			return "", usageErrorf("--password-stdin: no password on standard input")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	if !a.interactive() {
		return "", usageErrorf("no terminal to ask for the password: use --password-stdin")
	}
	return a.readPassword(fmt.Sprintf("password for user %s at %s: ", o.user, root))
}

func (a *app) runLogin(ctx context.Context, o loginOptions) error {
	root, err := a.serverRoot(o.url)
	if err != nil {
		return err
	}
	password, err := a.readPasswordFor(o, root)
	if err != nil {
		return err
	}
	c := a.newClient(root)
	s, err := c.Login(ctx, o.user, password)
	if err != nil {
		return err
	}
	st := a.sessions()
	if err := st.SetAuth(root.String(), devpi.Auth{User: o.user, Secret: s.Password}); err != nil {
		return fmt.Errorf("saving the session: %w", err)
	}
	if err := st.SetRoot(root.String()); err != nil {
		return fmt.Errorf("saving the session: %w", err)
	}
	fmt.Fprintf(a.stdout, "logged in '%s' at %s, credentials valid for %.2f hours\n", o.user, root, float64(s.Expiration)/3600)
	return nil
}

func (a *app) newLogoutCmd() *cobra.Command {
	var rootFlag string
	cmd := &cobra.Command{
		Use:   "logout [--url ROOT]",
		Short: "Forget devpi-credd's login session for a server",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := a.serverRoot(rootFlag)
			if err != nil {
				return err
			}
			st := a.sessions()
			current, err := st.CurrentUser(a.getenv)
			if err != nil {
				return err
			}
			user, ok, err := st.DeleteAuth(root.String(), current)
			if err != nil {
				return err
			}
			if !ok {
				return &exitError{exitFailed, errors.New("not logged in at " + root.String())}
			}
			fmt.Fprintf(a.stdout, "login information for '%s' at %s deleted\n", user, root)
			return nil
		},
	}
	urlFlag(cmd.Flags(), &rootFlag)
	return cmd
}

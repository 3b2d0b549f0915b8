package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

func (a *app) newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list, delete, derive, inspect and log in with devpi tokens",
		Long: `The token commands of devpi-tokens, compatible with its server plugin and
with devpi-client's token-* commands. create, list and delete need a login
session (see 'devpi-credd login', or devpi-client's own login); derive and
inspect work offline.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newTokenCreateCmd(), a.newTokenDeleteCmd(), a.newTokenListCmd(),
		a.newTokenDeriveCmd(), a.newTokenInspectCmd(), a.newTokenLoginCmd())
	return cmd
}

// restrictionFlags are -e, -a, -i and -p, shared by create and derive.
type restrictionFlags struct {
	expires  string
	allowed  []string
	indexes  []string
	projects []string
	yes      bool
}

func (f *restrictionFlags) register(fs *pflag.FlagSet, expiresDefault string) {
	fs.StringVarP(&f.expires, "expires", "e", expiresDefault,
		"expiry: epoch seconds, 'never', or a delta with units y(ears), M/month(s), w(eeks), d(ays), h(ours), m/min(utes), s(econds), such as '1 year' or '30min'")
	fs.StringArrayVarP(&f.allowed, "allowed", "a", nil,
		"comma separated permissions to allow; repeatable. devpi-server's: "+strings.Join(token.PublicPermissions, ", "))
	fs.StringArrayVarP(&f.indexes, "indexes", "i", nil, "comma separated USER/INDEX names to limit the token to; repeatable")
	fs.StringArrayVarP(&f.projects, "projects", "p", nil, "comma separated projects to limit the token to; repeatable")
	fs.BoolVarP(&f.yes, "yes", "y", false, "answer yes to questions (unknown permissions, overwriting -o FILE)")
}

// parsed is what the restriction flags ask for; nil lists were not given.
type parsed struct {
	expiresSet bool
	never      bool
	expiresAt  time.Time
	allowed    []string
	indexes    []string
	projects   []string
}

func (a *app) parseRestrictions(f restrictionFlags) (parsed, error) {
	var p parsed
	if f.expires != "" {
		at, never, err := token.ParseExpiry(f.expires, a.now())
		if err != nil {
			return p, usageErrorf("-e: %v", err)
		}
		p.expiresSet, p.never, p.expiresAt = true, never, at
	}
	var err error
	if f.allowed != nil {
		if _, err := token.Allowed(f.allowed...); err != nil {
			return p, usageErrorf("-a: %v", err)
		}
		p.allowed, _ = token.NormalizeList(f.allowed)
		var unknown []string
		for _, perm := range p.allowed {
			if !token.KnownPermission(perm) {
				unknown = append(unknown, perm)
			}
		}
		if len(unknown) > 0 {
			q := fmt.Sprintf("The following permissions are not known: %s\nAre you sure you want to use them?", strings.Join(unknown, ", "))
			if err := a.confirm(f.yes, q, "--yes"); err != nil {
				return p, err
			}
		}
	}
	if f.indexes != nil {
		if _, err = token.Indexes(f.indexes...); err != nil {
			return p, usageErrorf("-i: %v", err)
		}
		p.indexes, _ = token.NormalizeList(f.indexes)
	}
	if f.projects != nil {
		if _, err = token.Projects(f.projects...); err != nil {
			return p, usageErrorf("-p: %v", err)
		}
		p.projects, _ = token.NormalizeList(f.projects)
	}
	return p, nil
}

// tokenInput is -f FILE / --token, shared by derive, inspect and login.
type tokenInput struct {
	file  string
	token string
}

func (in *tokenInput) register(fs *pflag.FlagSet) {
	fs.StringVarP(&in.file, "file", "f", "", "file holding the token; - reads standard input")
	fs.StringVar(&in.token, "token", "", "the token itself (avoid: it shows in the process list and shell history)")
}

func (a *app) readToken(in tokenInput) (*token.Token, error) {
	var text, source string
	switch {
	case in.file != "" && in.token != "":
		return nil, usageErrorf("give either -f or --token, not both")
	case in.file == "-":
		line, err := a.stdinLines.ReadString('\n')
		if err != nil && line == "" {
			return nil, usageErrorf("no token on standard input")
		}
		text, source = line, "standard input"
	case in.file != "":
		if err := safefile.CheckPrivate(in.file); errors.Is(err, safefile.ErrTooOpen) {
			a.warnf("token file %v", err)
		}
		b, err := os.ReadFile(in.file)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, usageErrorf("token file %s does not exist", in.file)
			}
			return nil, usageErrorf("reading token file: %v", err)
		}
		text, source = string(b), "token file "+in.file
	case in.token != "":
		a.warnf("--token puts the token in the process list and shell history; prefer -f FILE or -f -")
		text, source = in.token, "--token"
	case a.interactive():
		s, err := a.readPassword("token: ")
		if err != nil {
			return nil, err
		}
		text, source = s, "the token entered"
	default:
		return nil, usageErrorf("no token given: use -f FILE, -f - (standard input) or --token TOKEN")
	}
	if strings.TrimSpace(text) == "" {
		return nil, usageErrorf("%s is empty", source)
	}
	t, err := token.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return t, nil
}

// writeToken prints the token, or writes it to path with mode 0600 after
// asking before it replaces a file.
func (a *app) writeToken(path string, yes bool, t *token.Token) error {
	if path == "" {
		_, err := fmt.Fprintln(a.stdout, t.Reveal())
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		q := fmt.Sprintf("There already exists a file at '%s'.\nDo you want to overwrite it?", path)
		if err := a.confirm(yes, q, "--yes"); err != nil {
			return err
		}
	}
	if err := safefile.Write(path, []byte(t.Reveal()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing token: %w", err)
	}
	a.infof("wrote token %s-%s to %s", t.User(), t.ID(), path)
	return nil
}

type createOptions struct {
	url, user, output string
	r                 restrictionFlags
}

func (a *app) newTokenCreateCmd() *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [--url ROOT] [-u USER] [-e EXPIRES] [-a PERMS]... [-i INDEXES]... [-p PROJECTS]... [-o FILE]",
		Short: "Create a token on the server (needs a login session)",
		Long: `Create a token for USER (default: the logged-in user) on devpi-server. Only
root (or users in --restrict-modify) may create tokens for other users,
without expiry, or for longer than a year. Prints the token, or writes it
to -o FILE with mode 0600.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runTokenCreate(cmd.Context(), o) },
	}
	urlFlag(cmd.Flags(), &o.url)
	cmd.Flags().StringVarP(&o.user, "user", "u", "", "create the token for this user instead of the logged-in one")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the token to FILE (mode 0600) instead of standard output")
	o.r.register(cmd.Flags(), "1 year")
	return cmd
}

func (a *app) runTokenCreate(ctx context.Context, o createOptions) error {
	p, err := a.parseRestrictions(o.r)
	if err != nil {
		return err
	}
	c, user, err := a.sessionClient(o.url, o.user)
	if err != nil {
		return err
	}
	req := devpi.CreateRequest{Allowed: p.allowed, Indexes: p.indexes, Projects: p.projects}
	switch {
	case p.never:
		req.Expires = "never"
	case p.expiresSet:
		req.Expires = p.expiresAt.Unix()
	}
	t, err := c.CreateToken(ctx, user, req)
	if err != nil {
		return sessionHint(err, c.Root)
	}
	return a.writeToken(o.output, o.r.yes, t)
}

func (a *app) newTokenDeleteCmd() *cobra.Command {
	var rootFlag, user string
	cmd := &cobra.Command{
		Use:   "delete [--url ROOT] [-u USER] TOKEN_ID",
		Short: "Delete a token on the server; every token derived from it stops working",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, user, err := a.sessionClient(rootFlag, user)
			if err != nil {
				return err
			}
			msg, err := c.DeleteToken(cmd.Context(), user, args[0])
			if err != nil {
				return sessionHint(err, c.Root)
			}
			fmt.Fprintln(a.stdout, msg)
			return nil
		},
	}
	urlFlag(cmd.Flags(), &rootFlag)
	cmd.Flags().StringVarP(&user, "user", "u", "", "the token's user instead of the logged-in one")
	return cmd
}

func (a *app) newTokenListCmd() *cobra.Command {
	var rootFlag, user string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--url ROOT] [-u USER] [--json]",
		Short: "List a user's tokens and their restrictions",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, user, err := a.sessionClient(rootFlag, user)
			if err != nil {
				return err
			}
			tokens, err := c.ListTokens(cmd.Context(), user)
			if err != nil {
				return sessionHint(err, c.Root)
			}
			if asJSON {
				return printJSON(a, map[string]any{"user": user, "server": c.Root.String(), "tokens": tokens})
			}
			if len(tokens) == 0 {
				fmt.Fprintf(a.stdout, "No tokens for '%s'\n", user)
				return nil
			}
			fmt.Fprintf(a.stdout, "Tokens for '%s':\n", user)
			for _, t := range tokens {
				fmt.Fprintf(a.stdout, "    %s\n", t.ID)
				if len(t.Restrictions) > 0 {
					fmt.Fprintln(a.stdout, "        restrictions:")
					for _, r := range t.Restrictions {
						fmt.Fprintf(a.stdout, "            %s\n", r)
					}
				}
			}
			return nil
		},
	}
	urlFlag(cmd.Flags(), &rootFlag)
	cmd.Flags().StringVarP(&user, "user", "u", "", "list this user's tokens instead of the logged-in one's")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type deriveOptions struct {
	in     tokenInput
	output string
	r      restrictionFlags
}

func (a *app) newTokenDeriveCmd() *cobra.Command {
	var o deriveOptions
	cmd := &cobra.Command{
		Use:   "derive (-f FILE | --token TOKEN) [-e EXPIRES] [-a PERMS]... [-i INDEXES]... [-p PROJECTS]... [-o FILE]",
		Short: "Derive a narrower token offline",
		Long: `Derive a new token from one you hold by adding restrictions. No server is
asked: the server checks each restriction when the token is used. A derived
token can only do less than its parent; restrictions are never removed.
The result keeps the "devpi-" prefix.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runTokenDerive(o) },
	}
	o.in.register(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the token to FILE (mode 0600) instead of standard output")
	o.r.register(cmd.Flags(), "")
	return cmd
}

func (a *app) runTokenDerive(o deriveOptions) error {
	p, err := a.parseRestrictions(o.r)
	if err != nil {
		return err
	}
	var rs []token.Restriction
	if p.allowed != nil {
		r, _ := token.Allowed(p.allowed...)
		rs = append(rs, r)
	}
	switch {
	case p.never:
		rs = append(rs, token.NeverExpires())
	case p.expiresSet:
		rs = append(rs, token.Expires(p.expiresAt))
	}
	if p.indexes != nil {
		r, _ := token.Indexes(p.indexes...)
		rs = append(rs, r)
	}
	if p.projects != nil {
		r, _ := token.Projects(p.projects...)
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return usageErrorf("No restrictions provided: give at least one of -e, -a, -i, -p")
	}
	t, err := a.readToken(o.in)
	if err != nil {
		return err
	}
	if s := t.Scope(); p.expiresSet && s.Expires != nil && (p.never || p.expiresAt.After(*s.Expires)) {
		a.warnf("the token already expires at %s; a later expiry has no effect", s.Expires.Local().Format(time.RFC3339))
	}
	d, err := t.Derive(rs...)
	if err != nil {
		return err
	}
	return a.writeToken(o.output, o.r.yes, d)
}

func (a *app) newTokenInspectCmd() *cobra.Command {
	var in tokenInput
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect (-f FILE | --token TOKEN) [--json]",
		Short: "Show a token's user, id and restrictions, offline",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.readToken(in)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a, map[string]any{"user": t.User(), "id": t.ID(), "caveats": t.ParsedCaveats(), "scope": t.Scope()})
			}
			a.printInspect(t)
			return nil
		},
	}
	in.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, with the effective scope of all caveats")
	return cmd
}

const localTime = "2006-01-02 15:04:05-07:00"

// printInspect prints devpi-tokens' token-inspect layout, with a reading of
// the PyPI caveats and of caveats the server would refuse.
func (a *app) printInspect(t *token.Token) {
	type row struct{ k, v string }
	rows := []row{{"user", t.User()}, {"id", t.ID()}}
	for _, c := range t.ParsedCaveats() {
		raw := printable(c.Raw)
		v := raw
		switch {
		case c.Kind == token.KindDevpi && c.Expires != nil:
			v = fmt.Sprintf("%s (%s)", raw, c.Expires.Local().Format(localTime))
		case c.Kind != token.KindDevpi && c.Kind != token.KindUnknown:
			var notes []string
			if c.NotBefore != nil {
				notes = append(notes, "not before "+c.NotBefore.Local().Format(localTime))
			}
			if c.Expires != nil {
				notes = append(notes, "expires "+c.Expires.Local().Format(localTime))
			}
			if c.List != nil {
				notes = append(notes, "projects "+strings.Join(c.List, ","))
			}
			if c.UserScope {
				notes = append(notes, "user scope")
			}
			v = fmt.Sprintf("%s (%s: %s)", raw, c.Kind, printable(strings.Join(notes, ", ")))
		}
		if c.Problem != "" {
			v = fmt.Sprintf("%s (%s)", raw, c.Problem)
		}
		rows = append(rows, row{"restriction", v})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.k))
	}
	fmt.Fprintln(a.stdout, "Token info:")
	for _, r := range rows {
		fmt.Fprintf(a.stdout, "    %-*s: %s\n", width, r.k, r.v)
	}
}

// printable quotes a caveat that holds control characters or invalid text,
// so that a crafted token cannot draw fake lines on the terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

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
	if o.devpiClient {
		// Refuse before anything is stored.
		if _, _, err := a.devpiClientFor(root); err != nil {
			return err
		}
	}
	c := a.newClient(root)
	c.Auth = &devpi.Auth{User: t.User(), Secret: t.Reveal()}
	info, err := c.API(ctx)
	if err != nil {
		return err
	}
	if user, ok := info.AuthOK(); !ok || user != t.User() {
		return &exitError{exitFailed, fmt.Errorf("login with token %s-%s at %s failed: the server's auth status is %q", t.User(), t.ID(), root, info.AuthState())}
	}
	where, err := a.storeRootToken(o, root, name, t)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "logged in '%s' at %s with token %s; stored %s\n", t.User(), root, t.ID(), where)
	if o.devpiClient {
		if err := a.devpiClientLogin(root, *c.Auth); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "devpi-client logged in as '%s' at %s\n", t.User(), root)
	}
	return nil
}

// devpiClientFor returns devpi-client's state and current server, and
// refuses when that is a server other than root.
func (a *app) devpiClientFor(root *url.URL) (devpi.StateDir, string, error) {
	cd, err := a.clientDir()
	if err != nil {
		return cd, "", err
	}
	cur, err := cd.Root()
	if err != nil {
		return cd, "", err
	}
	if cur != "" && cur != root.String() {
		return cd, "", &exitError{exitFailed, fmt.Errorf("devpi-client uses %s, not %s: run 'devpi use %s' first, or leave out --devpi-client", cur, root, root)}
	}
	return cd, cur, nil
}

// devpiClientLogin writes the credentials into devpi-client's state, as
// devpi-tokens' token-login does. devpi-client keeps one current server and
// user: logging it in for another server than its current one would log it
// out where it is, so that is refused.
func (a *app) devpiClientLogin(root *url.URL, auth devpi.Auth) error {
	cd, cur, err := a.devpiClientFor(root)
	if err != nil {
		return err
	}
	if cur == "" {
		if err := cd.SetRoot(root.String()); err != nil {
			return fmt.Errorf("logging devpi-client in: %w", err)
		}
	}
	if err := cd.SetAuth(root.String(), auth); err != nil {
		return fmt.Errorf("logging devpi-client in: %w", err)
	}
	return nil
}

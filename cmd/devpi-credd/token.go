package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
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

// restrictions are what the restriction flags ask for.
type restrictions struct {
	expiry expiry
	limits token.Limits
}

// expiry is -e: not given, never, or a time.
type expiry struct {
	set, never bool
	at         time.Time
}

func (a *app) parseRestrictions(f restrictionFlags) (restrictions, error) {
	var r restrictions
	if f.expires != "" {
		at, never, err := token.ParseExpiry(f.expires, a.now())
		if err != nil {
			return r, usageErrorf("-e: %v", err)
		}
		r.expiry = expiry{set: true, never: never, at: at}
	}
	l, err := token.ParseLimits(f.allowed, f.indexes, f.projects)
	if err != nil {
		return r, limitsError(err)
	}
	if unknown := l.UnknownPermissions(); len(unknown) > 0 {
		q := fmt.Sprintf("The following permissions are not known: %s\nAre you sure you want to use them?", strings.Join(unknown, ", "))
		if err := a.confirm(f.yes, q, "--yes"); err != nil {
			return r, err
		}
	}
	r.limits = l
	return r, nil
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

// limitFlags name the flag of each list of token.Limits.
var limitFlags = map[string]string{token.KeyAllowed: "-a", token.KeyIndexes: "-i", token.KeyProjects: "-p"}

// limitsError is a usage error naming the flag of a list that cannot be,
// or that a config does not allow.
func limitsError(err error) error {
	var le *token.ListError
	var oe *token.OutsideError
	switch {
	case errors.As(err, &le):
		return usageErrorf("%s: %v", limitFlags[le.Key], le.Err)
	case errors.As(err, &oe):
		return usageErrorf("%s %s: outside what the config allows (%s)", limitFlags[oe.Key], strings.Join(oe.Given, ","), strings.Join(oe.Have, ","))
	}
	return &exitError{exitUsage, err}
}

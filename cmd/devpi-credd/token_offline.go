package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/token"
)

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
	// devpi-tokens' order: allowed, expires, indexes, projects.
	caveats := p.limits.Caveats()
	var rs []token.Restriction
	if len(caveats) > 0 && caveats[0].Key() == token.KeyAllowed {
		rs, caveats = []token.Restriction{caveats[0]}, caveats[1:]
	}
	switch {
	case p.expiry.never:
		rs = append(rs, token.NeverExpires())
	case p.expiry.set:
		rs = append(rs, token.Expires(p.expiry.at))
	}
	rs = append(rs, caveats...)
	if len(rs) == 0 {
		return usageErrorf("No restrictions provided: give at least one of -e, -a, -i, -p")
	}
	t, err := a.readToken(o.in)
	if err != nil {
		return err
	}
	if s := t.Scope(); p.expiry.set && s.Expires != nil && (p.expiry.never || p.expiry.at.After(*s.Expires)) {
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

package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/devpi"
)

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
	req := devpi.CreateRequest{Allowed: p.limits.Allowed, Indexes: p.limits.Indexes, Projects: p.limits.Projects}
	switch {
	case p.expiry.never:
		req.Expires = "never"
	case p.expiry.set:
		req.Expires = p.expiry.at.Unix()
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

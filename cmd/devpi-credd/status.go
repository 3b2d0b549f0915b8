package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// daemonClient is the client of the running daemon: on socket when given
// (--socket), else where the config says (see helper.NewClient). What
// keeps the config from saying, and a $DEVPI_CREDD_DAEMON_UID that is not
// a uid, are warned about.
func (a *app) daemonClient(socket, configFlag string) *helper.Client {
	c, cfg, err := helper.NewClient(a.configPath(configFlag), a.getenv)
	if socket != "" {
		c.Socket = socket
	} else if err != nil {
		a.warnf("%s; looking for the daemon at %s", msg.OneLine(err.Error()), cfg.Socket)
	}
	if _, err := helper.TrustedUIDs(a.getenv); err != nil {
		a.warnf("%s", err)
	}
	return c
}

// daemonError maps the daemon's answers to exit codes.
func daemonError(err error) error {
	var ae *helper.APIError
	switch {
	case errors.Is(err, helper.ErrNotRunning):
		return &exitError{exitUnreachable, fmt.Errorf("%w: start it with 'devpi-credd serve'", err)}
	case errors.As(err, &ae) && ae.Code == localapi.CodeBadRequest:
		return &exitError{exitUsage, err}
	}
	return &exitError{exitFailed, err}
}

// daemonFlags are --socket and --config, for the commands that ask the
// daemon: the config says where its socket is.
type daemonFlags struct{ socket, config string }

func (f *daemonFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.socket, "socket", "", "the daemon's socket (default $DEVPI_CREDD_SOCKET, else the config's socket, else $XDG_RUNTIME_DIR/devpi-credd/socket)")
	configFlag(cmd, &f.config)
}

func (a *app) client(f daemonFlags) *helper.Client { return a.daemonClient(f.socket, f.config) }

func (a *app) newGetCmd() *cobra.Command {
	var df daemonFlags
	var in secretInput
	var ttl string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get [--json] [--ttl D] [--code-stdin] URL [USERNAME]",
		Short: "Ask the daemon for a short-lived token for URL",
		Long: `Ask the running daemon for a token scoped to URL: an index URL for reads
(.../+simple/), the index itself (USER/INDEX/) for uploads, or a bare host.
Prints the token, or with --json the user name, token, expiry, server and
the caveats it carries.

With approval on ('devpi-credd approval'), a token that can upload needs a
one-time code from your authenticator app: --code-stdin reads it from the
first line of standard input and sends it with the request; without it, get
asks for one on the terminal when the daemon wants one, and without a
terminal exits 1 saying so. A wrong or spent code is refused (exit 1), and
not asked for again.`,
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := localapi.CredentialsRequest{URL: args[0], TTL: ttl}
			if len(args) == 2 {
				req.Username = args[1]
			}
			ctx := cmd.Context()
			if in.codeStdin {
				code, err := a.oneTimeCode(ctx, in, "")
				if err != nil {
					return err
				}
				req.Code = code
			}
			c, err := a.approver().Credentials(ctx, a.client(df), req)
			if err != nil {
				return daemonError(err)
			}
			if asJSON {
				return printJSON(a, c)
			}
			_, err = fmt.Fprintln(a.stdout, c.Password)
			return err
		},
	}
	df.register(cmd)
	in.registerCode(cmd, codeStdinOne)
	cmd.Flags().StringVar(&ttl, "ttl", "", "lifetime such as 2m (default: the daemon's default_ttl; at most its max_ttl)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) newStatusCmd() *cobra.Command {
	var df daemonFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the daemon's servers, root tokens and counts",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := a.client(df).Status(ctx)
			if err != nil {
				return daemonError(err)
			}
			if asJSON {
				return printJSON(a, st)
			}
			a.printStatus(st)
			return nil
		},
	}
	df.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) printStatus(st *localapi.Status) {
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "daemon\t%s, pid %d, up %s\n", st.Version, st.PID, time.Since(st.Started).Round(time.Second))
	fmt.Fprintf(w, "socket\t%s\n", st.Socket)
	fmt.Fprintf(w, "config\t%s\n", st.Config)
	if st.ConfigError != "" {
		fmt.Fprintf(w, "config error\t%s (the previous config serves)\n", st.ConfigError)
	}
	fmt.Fprintf(w, "audit log\t%s\n", st.AuditLog)
	fmt.Fprintf(w, "ttl\tdefault %s, max %s\n", st.DefaultTTL, st.MaxTTL)
	fmt.Fprintf(w, "tokens\t%d minted, %d refused, %d lookups for services not ours\n", st.Minted, st.Refused, st.Missed)
	if st.Dropped > 0 {
		fmt.Fprintf(w, "connections\t%d dropped over the caps (another uid flooding the socket?)\n", st.Dropped)
	}
	if st.Exchange != "" {
		fmt.Fprintf(w, "exchange\t%s (trusted publishing), %d tokens handed out\n", st.Exchange, st.Exchanged)
		if st.ExchangeDropped > 0 {
			fmt.Fprintf(w, "exchange connections\t%d dropped over the caps (a flood from the network?)\n", st.ExchangeDropped)
		}
	}
	if st.AuditError != "" {
		fmt.Fprintf(w, "audit log error\t%s: no tokens until it can be written\n", st.AuditError)
	}
	if st.Locked {
		fmt.Fprintf(w, "locked\tyes: no tokens until 'devpi-credd unlock'\n")
	}
	switch {
	case st.Sealed && st.Opened:
		fmt.Fprintf(w, "sealed store\topen in the daemon's memory ('devpi-credd lock' closes it)\n")
	case st.Sealed:
		fmt.Fprintf(w, "sealed store\tnot open: no tokens from it until 'devpi-credd unlock'\n")
	}
	a.printApproval(w, st)
	if len(st.Hardening) > 0 {
		fmt.Fprintf(w, "hardening\tnot in force: %s\n", strings.Join(st.Hardening, "; "))
	}
	w.Flush()
	fmt.Fprintln(a.stdout, "servers:")
	w = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, s := range st.Servers {
		root := "no token: " + s.Error
		if s.Error == "" {
			exp := "never expires"
			if s.Expires != 0 {
				exp = "expires " + time.Unix(s.Expires, 0).Local().Format(localTime)
			}
			root = fmt.Sprintf("%s-%s, %s", s.User, s.TokenID, exp)
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d minted\t%s\n", s.Name, s.URL, root, s.Minted, strings.TrimSpace(s.Store))
	}
	w.Flush()
}

func (a *app) newLockCmd() *cobra.Command {
	var df daemonFlags
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Make the daemon refuse every token until 'devpi-credd unlock' (leaving the machine, a suspected leak)",
		Long: `Make the daemon refuse every token until 'devpi-credd unlock'. A daemon with
a sealed store also drops what it opened of it: its root tokens and the
approval secret leave its memory, and unlock asks for the passphrase again.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.client(df).Lock(cmd.Context())
			if err != nil {
				return daemonError(err)
			}
			fmt.Fprintln(a.stdout, lockLine(st))
			return nil
		},
	}
	df.register(cmd)
	return cmd
}

func (a *app) newUnlockCmd() *cobra.Command {
	var df daemonFlags
	var in secretInput
	cmd := &cobra.Command{
		Use:   "unlock [--passphrase-stdin]",
		Short: "Let the daemon mint tokens again; open its sealed store",
		Long: `Let the daemon mint tokens again after 'devpi-credd lock'. A daemon whose
tokens are in a sealed store ('devpi-credd token login --seal') starts with
it closed, and lock closes it: unlock then asks for its passphrase on the
terminal (without echo), or reads it from the first line of standard input
with --passphrase-stdin, and the daemon opens the store into its memory
only. Wrong passphrases are refused (exit 1), and are slowed down like
wrong one-time codes.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := a.client(df)
			st, err := c.Status(ctx)
			if err != nil {
				return daemonError(err)
			}
			var pass string
			if st.Sealed && !st.Opened {
				if pass, err = a.passphrase(in, "passphrase of the sealed store: ", false); err != nil {
					return err
				}
			}
			if st, err = c.Unlock(ctx, pass); err != nil {
				return daemonError(err)
			}
			fmt.Fprintln(a.stdout, lockLine(st))
			return nil
		},
	}
	df.register(cmd)
	in.registerPassphrase(cmd)
	return cmd
}

// lockLine says what a lock or unlock left in force.
func lockLine(st *localapi.Status) string {
	switch {
	case st.Locked:
		return "daemon locked: no tokens until 'devpi-credd unlock'"
	case st.Sealed && !st.Opened:
		return "daemon unlocked, its sealed store still closed: no tokens from it until 'devpi-credd unlock' opens it"
	case st.Sealed:
		return "daemon unlocked, its sealed store open"
	}
	return "daemon unlocked"
}

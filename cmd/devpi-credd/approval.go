package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// secretInput is where a command's passphrase and one-time codes come
// from: standard input, one line each, in that order (--passphrase-stdin,
// --code-stdin), else the terminal. A co-process can so answer a code
// after it has read what the command printed (setup's URI).
type secretInput struct {
	passphraseStdin bool
	codeStdin       bool
}

func (in *secretInput) registerPassphrase(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&in.passphraseStdin, "passphrase-stdin", false, "read the sealed store's passphrase from the first line of standard input instead of the terminal")
}

func (in *secretInput) registerCode(cmd *cobra.Command, usage string) {
	cmd.Flags().BoolVar(&in.codeStdin, "code-stdin", false, usage)
}

// Usages of --code-stdin.
const (
	codeStdinOne   = "read the one-time code from the first line of standard input instead of the terminal"
	codeStdinLines = "read one-time codes from standard input, a line each as needed (after the passphrase's line, with --passphrase-stdin), instead of the terminal"
)

// approver asks for one-time codes on the terminal (see helper.Approver).
func (a *app) approver() helper.Approver { return helper.Approver{Terminal: a.openTTY} }

// stdinLine is the next line of standard input, without its line end.
func (a *app) stdinLine(flag, what string) (string, error) {
	line, err := a.stdinLines.ReadString('\n')
	if err != nil && line == "" {
		return "", usageErrorf("%s: no %s on standard input", flag, what)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// oneTimeCode is a code from the person's authenticator: the next line of
// standard input with --code-stdin, else asked on the terminal with
// prompt. Never from argv or the environment, and never repeated in a
// message.
func (a *app) oneTimeCode(ctx context.Context, in secretInput, prompt string) (string, error) {
	if in.codeStdin {
		line, err := a.stdinLine("--code-stdin", "one-time code")
		if err != nil {
			return "", err
		}
		if code := helper.CleanCode(line); code != "" {
			return code, nil
		}
		return "", usageErrorf("--code-stdin: the line for the one-time code is empty")
	}
	code, err := a.approver().AskCode(ctx, prompt)
	switch {
	case errors.Is(err, helper.ErrNoTerminal):
		return "", errNoCodeTerminal
	case err != nil:
		return "", &exitError{exitFailed, err}
	}
	return code, nil
}

// Without a terminal a command refuses, as confirm does: exit 1.
var errNoCodeTerminal = &exitError{exitFailed, errors.New("a one-time code is needed and there is no terminal to ask on: pass --code-stdin and write the code on standard input")}

// checkCodeTerminal fails at once, before the daemon is asked to change
// anything, when codes are to be asked on a terminal and there is none.
func (a *app) checkCodeTerminal(in secretInput) error {
	if in.codeStdin {
		return nil
	}
	tty, err := a.openTTY()
	if err != nil {
		return errNoCodeTerminal
	}
	return tty.Close()
}

// passphrase is the sealed store's passphrase: the next line of standard
// input with --passphrase-stdin, else asked on the terminal without echo
// (twice, when confirm: a new store).
func (a *app) passphrase(in secretInput, prompt string, confirm bool) (string, error) {
	if in.passphraseStdin {
		p, err := a.stdinLine("--passphrase-stdin", "passphrase")
		if err == nil && p == "" {
			err = usageErrorf("--passphrase-stdin: the passphrase's line is empty")
		}
		return p, err
	}
	p, err := a.readSecret(prompt)
	switch {
	case errors.Is(err, helper.ErrNoTerminal):
		return "", &exitError{exitFailed, errors.New("the sealed store's passphrase is needed and there is no terminal to ask on: pass --passphrase-stdin and write it on standard input")}
	case err != nil:
		return "", &exitError{exitFailed, fmt.Errorf("reading the passphrase: %w", err)}
	case p == "":
		return "", &exitError{exitFailed, errors.New("no passphrase entered")}
	}
	if confirm {
		again, err := a.readSecret("the same passphrase again: ")
		if err != nil {
			return "", &exitError{exitFailed, fmt.Errorf("reading the passphrase: %w", err)}
		}
		if again != p {
			return "", &exitError{exitFailed, errors.New("the passphrases differ; nothing done")}
		}
	}
	return p, nil
}

type approvalOptions struct {
	daemon  daemonFlags
	in      secretInput
	account string
	asJSON  bool
}

func (a *app) newApprovalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "Set up, show or turn off one-time codes for uploads",
		Long: `With approval on, the daemon hands out a token that can upload (and a
devpi-client session that can write) only for a request that carries a
fresh one-time code from the person's authenticator app (TOTP, as for
two-factor log-ins), and such a token lives 2 minutes at most. A program
running as you, without your authenticator, gets read tokens only.

The keyring helper and the Python backend ask for the code on the terminal
when an upload needs one (twine, uv publish, poetry, pdm); 'devpi-credd get
--code-stdin URL' reads it for scripts; 'devpi-credd exec --approve -- CMD'
asks once for a whole job; 'devpi-credd devpi-login --approve' for
devpi-client. A code is never taken from the command line or the
environment.

The secret and the policy live in the daemon's protected store: the sealed
store of a personal daemon ('devpi-credd token login --seal'), or a system
daemon's own files; never in the config, which any program of yours could
edit.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newApprovalSetupCmd(), a.newApprovalOffCmd(), a.newApprovalStatusCmd())
	return cmd
}

func (a *app) newApprovalSetupCmd() *cobra.Command {
	var o approvalOptions
	cmd := &cobra.Command{
		Use:   "setup [--account NAME] [--passphrase-stdin] [--code-stdin] [--json]",
		Short: "Enrol an authenticator app and turn approval on for uploads",
		Long: `Have the daemon make a new secret and show it: the otpauth:// URI on a line
of its own, then a QR code of it for an authenticator app to scan. Then it
asks for a first code from the app ("one-time code: "), which puts the
secret in force and turns approval on for uploads. Enrolling again, to
replace the authenticator, needs a current code of the one set up now,
asked first.

A personal daemon keeps the secret in its sealed store, which setup
re-seals: it asks for the store's passphrase first. A personal daemon
without a sealed store refuses: run 'devpi-credd token login --seal'
first.

--json prints the enrollment as JSON ({"id", "uri", "expires"}) instead of
the URI and the QR code, and still asks for the code. With
--passphrase-stdin and --code-stdin, the lines are read from standard input
as they are needed: the passphrase, the current code (when enrolling
again), then the new code, so that a program can answer the code after it
has read the URI.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runApprovalSetup(cmd.Context(), o) },
	}
	o.register(cmd)
	cmd.Flags().StringVar(&o.account, "account", "", "the name the authenticator app shows for it (default: user@host)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the enrollment as JSON instead of the URI and the QR code")
	return cmd
}

func (a *app) runApprovalSetup(ctx context.Context, o approvalOptions) error {
	c, st, pass, err := a.approvalStart(ctx, o)
	if err != nil {
		return err
	}
	// The URI holds the secret: never shown when nobody can confirm it.
	if err := a.checkCodeTerminal(o.in); err != nil {
		return err
	}
	begin := localapi.ApprovalBegin{Account: o.account}
	if st.Approval.Enrolled {
		if begin.Code, err = a.oneTimeCode(ctx, o.in, "one-time code of the authenticator set up now: "); err != nil {
			return err
		}
	}
	e, err := c.ApprovalBegin(ctx, begin)
	if err != nil {
		return daemonError(err)
	}
	if o.asJSON {
		if err := printJSON(a, e); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.stdout, e.URI)
		if err := approval.WriteQR(a.stdout, e.URI); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Scan the QR code (or enter the URI above) in your authenticator app before %s, then enter the code it shows.\n",
			time.Unix(e.Expires, 0).Local().Format(localTime))
	}
	code, err := a.oneTimeCode(ctx, o.in, "one-time code: ")
	if err != nil {
		return err
	}
	st, err = c.ApprovalConfirm(ctx, localapi.ApprovalConfirm{ID: e.ID, Code: code, Passphrase: pass})
	if err != nil {
		return daemonError(err)
	}
	out := a.stdout
	if o.asJSON {
		out = a.stderr // stdout holds the JSON alone
	}
	fmt.Fprintln(out, approvalSummary(st))
	return nil
}

// approvalStart is how setup and off begin: the daemon's client and
// status (whose Approval is never nil), and the sealed store's passphrase
// when the daemon keeps the approval policy in one (personal mode), since
// their change re-seals it. The store must be open: the policy is unknown
// until then.
func (a *app) approvalStart(ctx context.Context, o approvalOptions) (c *helper.Client, st *localapi.Status, pass string, err error) {
	c = a.client(o.daemon)
	if st, err = c.Status(ctx); err != nil {
		return nil, nil, "", daemonError(err)
	}
	if st.Sealed && !st.Opened {
		return nil, nil, "", &exitError{exitFailed, errors.New("the daemon's sealed store is not open: run 'devpi-credd unlock' first")}
	}
	if st.Approval == nil {
		st.Approval = &localapi.ApprovalStatus{}
	}
	if st.Sealed {
		pass, err = a.passphrase(o.in, "passphrase of the sealed store: ", false)
	}
	return c, st, pass, err
}

// register adds the flags setup and off share.
func (o *approvalOptions) register(cmd *cobra.Command) {
	o.daemon.register(cmd)
	o.in.registerPassphrase(cmd)
	o.in.registerCode(cmd, codeStdinLines)
}

func (a *app) newApprovalOffCmd() *cobra.Command {
	var o approvalOptions
	cmd := &cobra.Command{
		Use:   "off [--passphrase-stdin] [--code-stdin]",
		Short: "Turn approval off: uploads need no one-time code (needs a current code)",
		Long: `Turn approval off and forget the authenticator's secret: tokens that can
upload are handed out without a code again. It needs a current code from the
authenticator (asked on the terminal, or the line after the passphrase's
with --code-stdin), and a personal daemon's sealed store's passphrase
(asked first), so that no program of yours can turn it off.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runApprovalOff(cmd.Context(), o) },
	}
	o.register(cmd)
	return cmd
}

func (a *app) runApprovalOff(ctx context.Context, o approvalOptions) error {
	c, st, pass, err := a.approvalStart(ctx, o)
	if err != nil {
		return err
	}
	if !st.Approval.Enrolled && !st.Approval.Uploads {
		fmt.Fprintln(a.stdout, "approval is off already")
		return nil
	}
	code, err := a.oneTimeCode(ctx, o.in, "one-time code: ")
	if err != nil {
		return err
	}
	if st, err = c.ApprovalOff(ctx, localapi.ApprovalOff{Code: code, Passphrase: pass}); err != nil {
		return daemonError(err)
	}
	fmt.Fprintln(a.stdout, approvalSummary(st))
	return nil
}

func (a *app) newApprovalStatusCmd() *cobra.Command {
	var df daemonFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the approval policy in force and its throttle",
		Long: `Show whether uploads need a one-time code, how long an approved token lives,
which authenticator is enrolled and since when, where the secret is kept,
and the wrong codes in a row (after 5, codes are refused for a while).
--json prints the daemon's approval status as JSON; never the secret.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.client(df).Status(cmd.Context())
			if err != nil {
				return daemonError(err)
			}
			if asJSON {
				if st.Approval == nil {
					st.Approval = &localapi.ApprovalStatus{}
				}
				return printJSON(a, st.Approval)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			a.printApproval(w, st)
			return w.Flush()
		},
	}
	df.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// approvalSummary says in one line what is in force after a change.
func approvalSummary(st *localapi.Status) string {
	ap := st.Approval
	switch {
	case ap == nil || !ap.Enrolled && !ap.Uploads:
		return "approval off: tokens that can upload are handed out without a one-time code"
	case !ap.Uploads:
		return fmt.Sprintf("authenticator %s enrolled; uploads need no one-time code", orUnnamed(ap.Account))
	}
	return fmt.Sprintf("approval on: every token that can upload needs a one-time code from %s and lives %s at most", orUnnamed(ap.Account), orDefault(ap.UploadTTL, approval.DefaultUploadTTL.String()))
}

// printApproval writes the approval lines of a status.
func (a *app) printApproval(w io.Writer, st *localapi.Status) {
	ap := st.Approval
	switch {
	case st.Sealed && !st.Opened:
		fmt.Fprintf(w, "approval\tunknown until the sealed store is opened ('devpi-credd unlock')\n")
		return
	case ap == nil || !ap.Enrolled && !ap.Uploads:
		fmt.Fprintf(w, "approval\toff: uploads need no one-time code ('devpi-credd approval setup' turns it on)\n")
		return
	case ap.Uploads && !ap.Enrolled:
		fmt.Fprintf(w, "approval\ton, no authenticator enrolled: every upload is refused until 'devpi-credd approval setup'\n")
	case ap.Uploads:
		fmt.Fprintf(w, "approval\ton: uploads need a one-time code; approved tokens live %s at most\n", orDefault(ap.UploadTTL, approval.DefaultUploadTTL.String()))
	default:
		fmt.Fprintf(w, "approval\toff for uploads (an authenticator is enrolled)\n")
	}
	if ap.Enrolled {
		since := ""
		if ap.Since != 0 {
			since = ", enrolled " + time.Unix(ap.Since, 0).Local().Format(localTime)
		}
		fmt.Fprintf(w, "authenticator\t%s%s\n", orUnnamed(ap.Account), since)
	}
	if ap.Store != "" {
		where := ap.Store
		if where == "sealed" {
			where = "the sealed store"
		}
		fmt.Fprintf(w, "policy kept in\t%s\n", where)
	}
	if ap.Failures > 0 || ap.BlockedUntil != 0 {
		line := fmt.Sprintf("%d wrong in a row", ap.Failures)
		if until := time.Unix(ap.BlockedUntil, 0); ap.BlockedUntil != 0 && until.After(a.now()) {
			line += ", every code refused until " + until.Local().Format(localTime)
		}
		fmt.Fprintf(w, "codes\t%s\n", line)
	}
}

func orUnnamed(account string) string { return orDefault(account, "the authenticator") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/job"
	"github.com/devpi-credd/devpi-credd/localapi"
)

func (a *app) newExecCmd() *cobra.Command {
	var o jobOptions
	cmd := &cobra.Command{
		Use:   "exec [--server NAME | --url ROOT] [--token-file FILE | --oidc [--audience AUD] | --approve [--code-stdin]] [--ttl D] [-i INDEX] [-p PROJECT] [-a PERMS] -- COMMAND ARGS...",
		Short: "Run a command (a CI job) with short-lived tokens only, then forget them",
		Long: `Run COMMAND with a private daemon of its own: pip, uv, twine and devpi-client
in it get short-lived tokens scoped by -i/-p/-a that expire --ttl after the
start at the latest. The long-lived token comes from --token-file (- for
standard input), $DEVPI_CREDD_TOKEN_FILE or $DEVPI_CREDD_TOKEN, stays in
this process's memory and is removed from the child's environment.

With --server NAME and none of those, the running daemon gives the job its
token: a session token for the server, narrowed by -i/-p/-a as above, so
that the long-lived token never leaves the daemon. With approval on
('devpi-credd approval'), such a token cannot upload, unless --approve: it
asks once for a one-time code on the terminal (--code-stdin: the first line
of standard input; the child gets the rest), and the job's tokens can upload
for as long as the daemon lets an approved token live (2 minutes by
default). The job's daemon then answers only the command's own processes
(Linux). Only when no daemon runs, and the server's token is in a plain file
or the keychain, does exec read it itself; a sealed store needs the daemon.

With --oidc there is no stored token at all (trusted publishing): exec gets
the CI job's identity token for the audience --audience (default: the
exchange's host name, lower-case, without port), trades it at the exchange
(--exchange, default the server's scheme and host) for a token that lives
minutes, and runs the job on that token as above. The identity token comes
from the first of: --id-token-file; --id-token-command, a shell command
line that prints it (a CI's own tool, told the audience in
$DEVPI_CREDD_AUDIENCE); $DEVPI_CREDD_ID_TOKEN; $<AUDIENCE>_ID_TOKEN (GitLab
CI's 'id_tokens:' convention: the audience upper-cased, all but A-Z and 0-9
made _); GitHub Actions' token service, given 'permissions: id-token:
write'. An exchange that names another audience is refused before any
identity token is asked for. Outside a CI job with an identity, it says so
and exits 2; a failing --id-token-command exits 1.

The child gets DEVPI_CREDD_SOCKET, PIP_KEYRING_PROVIDER=subprocess,
UV_KEYRING_PROVIDER=subprocess, a 'keyring' first on PATH, the keyring
backend on PYTHONPATH (for twine), and a devpi-client logged in with a
session token (DEVPI_CLIENTDIR). Signals are passed on; the exit code is the
command's. The socket and every temporary file are removed at the end, also
when exec is killed.`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runExec(cmd.Context(), o, args) },
	}
	cmd.Flags().SetInterspersed(false)
	o.register(cmd.Flags())
	o.registerApprove(cmd)
	return cmd
}

func (a *app) runExec(ctx context.Context, o jobOptions, argv []string) (err error) {
	// A secret in this process's memory and environment: no core dumps, and
	// no /proc/PID/environ or mem for other processes of the user (the
	// child included).
	job.ProtectProcess()
	// Signals from here on: until the child runs, one ends the job (after
	// cleaning up); then they are passed on.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, job.ForwardedSignals()...)
	defer signal.Stop(sigs)
	spec, err := a.jobSpec(ctx, o)
	if err != nil {
		return err
	}
	j, err := job.Start(ctx, spec, a.jobOpts(o, true))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := j.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	code, err := j.Run(ctx, argv, job.Stdio{Stdin: a.childStdin(o), Stdout: a.stdout, Stderr: a.stderr}, sigs)
	var ee *job.ExitError
	if errors.As(err, &ee) {
		return &exitError{ee.Code, ee}
	}
	if err != nil {
		return err
	}
	if n := j.Minted(); n > 0 && o.auditLog == "" {
		a.infof("devpi-credd: the job got %d short-lived tokens for %s, all dead by %s", n, spec.Server.URL, j.Deadline().Local().Format(localTime))
	}
	if code != 0 {
		return &exitError{code, errQuiet}
	}
	return nil
}

func (a *app) newEnvCmd() *cobra.Command {
	var o jobOptions
	var format string
	cmd := &cobra.Command{
		Use:   "env [--server NAME | --url ROOT] [--token-file FILE | --oidc] [--ttl D] -i USER/INDEX [-p PROJECT] [--format shell|dotenv|github]",
		Short: "Print variables holding one short-lived upload token, for CI systems that want variables",
		Long: `Derive one upload token for the index given with -i (scoped by -p and -a,
expiring after --ttl) and print TWINE_USERNAME, TWINE_PASSWORD,
TWINE_REPOSITORY_URL, UV_PUBLISH_URL, UV_PUBLISH_USERNAME and
UV_PUBLISH_PASSWORD. --format shell (default) prints export lines for eval;
dotenv prints KEY=VALUE lines; github appends them to $GITHUB_ENV and prints
an ::add-mask:: command so that the token is masked in the job's log.
--oidc trades the CI job's identity token at the exchange instead of
reading a stored token (see exec).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runEnv(cmd.Context(), o, format) },
	}
	o.register(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "shell", "shell, dotenv or github")
	return cmd
}

func (a *app) runEnv(ctx context.Context, o jobOptions, format string) error {
	job.ProtectProcess()
	if _, err := job.FormatVars(format, nil); err != nil {
		return usageErrorf("--%v", err)
	}
	if len(o.indexes) == 0 {
		return usageErrorf("-i USER/INDEX: env makes an upload token, for one index")
	}
	spec, err := a.jobSpec(ctx, o)
	if err != nil {
		return err
	}
	j, err := job.Start(ctx, spec, a.jobOpts(o, false))
	if err != nil {
		return err
	}
	defer j.Close()
	upload, err := j.UploadURL()
	if err != nil {
		return usageErrorf("-i: %v", err)
	}
	creds, err := j.Mint(ctx, localapi.CredentialsRequest{URL: upload}, "env")
	if err != nil {
		return &exitError{exitFailed, err}
	}
	text, err := job.FormatVars(format, job.UploadVars(upload, creds.Username, creds.Password))
	if err != nil {
		return err
	}
	if format != "github" {
		_, err = io.WriteString(a.stdout, text)
		return err
	}
	path := a.getenv("GITHUB_ENV")
	if path == "" {
		return usageErrorf("--format github: $GITHUB_ENV is not set (is this a GitHub Actions step?)")
	}
	fmt.Fprintf(a.stdout, "::add-mask::%s\n", creds.Password)
	if err := appendFile(path, text); err != nil {
		return err
	}
	a.infof("devpi-credd: wrote TWINE_* and UV_PUBLISH_* to $GITHUB_ENV; the token expires %s", time.Unix(creds.Expires, 0).Local().Format(localTime))
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

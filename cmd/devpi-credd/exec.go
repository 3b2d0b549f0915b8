package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/job"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// jobOptions are the flags exec and env share: which server, where the
// long-lived token comes from, and what every token of the job may do.
type jobOptions struct {
	server    string
	url       string
	tokenFile string
	ttl       time.Duration
	indexes   []string
	projects  []string
	allowed   []string
	config    string
	auditLog  string
	// Trusted publishing: the long-lived token is replaced by one the
	// exchange mints for the job's identity token.
	oidc        bool
	exchange    string
	idTokenFile string
}

func (o *jobOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", "", "a server of the config (its URL and restrictions)")
	fs.StringVar(&o.url, "url", "", "devpi-server root URL")
	fs.StringVar(&o.tokenFile, "token-file", "", "file with the long-lived token; - reads standard input (default $DEVPI_CREDD_TOKEN_FILE, else $DEVPI_CREDD_TOKEN, else the server's store)")
	fs.DurationVar(&o.ttl, "ttl", 15*time.Minute, "every token of the job expires this long after the job starts, at the latest")
	fs.StringArrayVarP(&o.indexes, "indexes", "i", nil, "USER/INDEX the job's tokens are limited to; comma separated, repeatable")
	fs.StringArrayVarP(&o.projects, "projects", "p", nil, "projects the job's tokens are limited to; comma separated, repeatable")
	fs.StringArrayVarP(&o.allowed, "allowed", "a", nil, "permissions the job's tokens are limited to; comma separated, repeatable")
	fs.StringVar(&o.config, "config", "", "config file, for --server")
	fs.StringVar(&o.auditLog, "audit-log", "", "append the job's audit lines (JSON, no secrets) to this file")
	fs.BoolVar(&o.oidc, "oidc", false, "trusted publishing: no stored token; trade the CI job's identity token at the exchange for the job's token")
	fs.StringVar(&o.exchange, "exchange", "", "with --oidc: the exchange's URL (default: the server's scheme and host, where a proxy routes /_/oidc/)")
	fs.StringVar(&o.idTokenFile, "id-token-file", "", "with --oidc: read the identity token from this file (default $DEVPI_CREDD_ID_TOKEN, else GitHub Actions' token service)")
}

// jobSpec is the job the flags ask for: the server (from the config, or
// --url), its limits narrowed by -i/-p/-a (never widened), the long-lived
// token.
func (a *app) jobSpec(ctx context.Context, o jobOptions) (job.Spec, error) {
	if o.ttl < time.Second {
		return job.Spec{}, usageErrorf("--ttl %s: at least 1s", o.ttl)
	}
	if err := o.checkOIDC(); err != nil {
		return job.Spec{}, err
	}
	srv := config.Server{Name: "job", ReadScope: "index"}
	switch {
	case o.server != "" && o.url != "":
		return job.Spec{}, usageErrorf("give --server or --url, not both")
	case o.server != "":
		cfg, err := config.Load(a.configPath(o.config), a.getenv)
		if err != nil {
			return job.Spec{}, &exitError{exitUsage, err}
		}
		s, err := a.chooseServer(cfg, o.server)
		if err != nil {
			return job.Spec{}, err
		}
		srv = *s
	case o.url != "":
		u, err := devpi.ParseRoot(o.url)
		if err != nil {
			return job.Spec{}, &exitError{exitUsage, err}
		}
		srv.URL = u
	default:
		return job.Spec{}, usageErrorf("which server? give --url ROOT or --server NAME")
	}
	flags, err := token.ParseLimits(o.allowed, o.indexes, o.projects)
	if err != nil {
		return job.Spec{}, limitsError(err)
	}
	if srv.Limits, err = srv.Limits.Intersect(flags); err != nil {
		return job.Spec{}, limitsError(err)
	}
	if o.oidc {
		return a.exchangeSpec(ctx, o, srv)
	}
	root, err := a.jobToken(o, srv)
	if err != nil {
		return job.Spec{}, err
	}
	return job.Spec{Server: srv, Root: root, TTL: o.ttl}, nil
}

// tokenFile is where the long-lived token comes from as a file: --token-file,
// else $DEVPI_CREDD_TOKEN_FILE (which wins over $DEVPI_CREDD_TOKEN); ""
// when it does not come from a file. The one place that decides: reading
// the token and guarding standard input must agree.
func (a *app) tokenFile(o jobOptions) string {
	if o.tokenFile != "" {
		return o.tokenFile
	}
	return a.getenv("DEVPI_CREDD_TOKEN_FILE")
}

// jobToken reads the long-lived token: from tokenFile, else
// $DEVPI_CREDD_TOKEN, else the configured server's store.
func (a *app) jobToken(o jobOptions, srv config.Server) (*token.Token, error) {
	switch file := a.tokenFile(o); {
	case file != "":
		return a.readToken(tokenInput{file: file})
	case a.getenv("DEVPI_CREDD_TOKEN") != "":
		t, err := token.Parse(a.getenv("DEVPI_CREDD_TOKEN"))
		if err != nil {
			return nil, fmt.Errorf("$DEVPI_CREDD_TOKEN: %w", err)
		}
		return t, nil
	case o.server != "":
		return srv.Backend().Load()
	}
	return nil, usageErrorf("no long-lived token: give --token-file FILE (- for standard input), or set DEVPI_CREDD_TOKEN_FILE or DEVPI_CREDD_TOKEN")
}

// childStdin is the child's standard input. When the token came from
// standard input, the child never gets the file itself, which it could
// rewind or reopen (/proc/self/fd/0) to read the token again: after a
// token file "-", what follows the token comes through a pipe of the
// child's own; after a path that is standard input under another name
// (/dev/stdin), nothing does.
func (a *app) childStdin(o jobOptions) io.Reader {
	file := a.tokenFile(o)
	if o.oidc {
		return a.stdin
	}
	if file == "-" {
		return struct{ io.Reader }{a.stdinLines}
	}
	in, ok := a.stdin.(*os.File)
	if file == "" || !ok {
		return a.stdin
	}
	st, err := in.Stat()
	fst, ferr := os.Stat(file)
	if err == nil && ferr == nil && os.SameFile(st, fst) {
		return nil
	}
	return a.stdin
}

func (a *app) jobOpts(o jobOptions, forChild bool) job.Options {
	return job.Options{Getenv: a.getenv, Now: a.now, Version: version, AuditLog: o.auditLog, ForChild: forChild,
		Logger: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

func (a *app) newExecCmd() *cobra.Command {
	var o jobOptions
	cmd := &cobra.Command{
		Use:   "exec [--server NAME | --url ROOT] [--token-file FILE | --oidc] [--ttl D] [-i INDEX] [-p PROJECT] [-a PERMS] -- COMMAND ARGS...",
		Short: "Run a command (a CI job) with short-lived tokens only, then forget them",
		Long: `Run COMMAND with a private daemon of its own: pip, uv, twine and devpi-client
in it get short-lived tokens scoped by -i/-p/-a that expire --ttl after the
start at the latest. The long-lived token comes from --token-file (- for
standard input), $DEVPI_CREDD_TOKEN_FILE or $DEVPI_CREDD_TOKEN, stays in
this process's memory and is removed from the child's environment.

With --oidc there is no stored token at all (trusted publishing): exec gets
the CI job's identity token (GitHub Actions' token service, given
'permissions: id-token: write'; $DEVPI_CREDD_ID_TOKEN, such as a GitLab CI
'id_tokens:' entry; or --id-token-file), trades it at the exchange
(--exchange, default the server's scheme and host) for a token that lives
minutes, and runs the job on that token as above. Outside a CI job with an
identity, it says so and exits 2.

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

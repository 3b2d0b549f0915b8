package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
	"github.com/devpi-credd/devpi-credd/job"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/store"
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
	oidc           bool
	exchange       string
	audience       string
	idTokenFile    string
	idTokenCommand string
	// approve (exec --approve): a one-time code, from the terminal or
	// the first line of standard input (code.codeStdin), for a job token
	// that can upload.
	approve bool
	code    secretInput
}

// registerApprove adds exec's --approve and --code-stdin.
func (o *jobOptions) registerApprove(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.approve, "approve", false, "with approval on: ask for a one-time code once, for a job token that can upload (from the running daemon; its daemon then answers the job's processes only; Linux)")
	o.code.registerCode(cmd, "with --approve: read the one-time code from the first line of standard input instead of the terminal; the command gets the rest")
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
	fs.StringVar(&o.audience, "audience", "", "with --oidc: the audience the identity token is got for, which the exchange's config must set (default: the exchange's host name, lower-case, without port)")
	fs.StringVar(&o.idTokenFile, "id-token-file", "", "with --oidc: read the identity token from this file (default: $DEVPI_CREDD_ID_TOKEN, else $<AUDIENCE>_ID_TOKEN, else GitHub Actions' token service)")
	fs.StringVar(&o.idTokenCommand, "id-token-command", "", "with --oidc: run this shell command line for the identity token, printed on its stdout; it finds the audience in $DEVPI_CREDD_AUDIENCE (Buildkite: 'buildkite-agent oidc request-token --audience \"$DEVPI_CREDD_AUDIENCE\"')")
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
	if err := a.checkApprove(o); err != nil {
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
	if a.tokenFile(o) == "" && a.getenv("DEVPI_CREDD_TOKEN") == "" && (o.server != "" || o.approve) {
		return a.daemonJobSpec(ctx, o, srv)
	}
	root, err := a.jobToken(o, srv)
	if err != nil {
		return job.Spec{}, err
	}
	return job.Spec{Server: srv, Root: root, TTL: o.ttl}, nil
}

// checkApprove refuses what does not go with --approve and --code-stdin,
// before anything is asked.
func (a *app) checkApprove(o jobOptions) error {
	switch {
	case o.code.codeStdin && !o.approve:
		return usageErrorf("--code-stdin goes with --approve")
	case !o.approve:
		return nil
	case !job.CanAdmitChildOnly:
		return usageErrorf("--approve needs Linux: the job's daemon must tell the job's own processes from others, which it reads in /proc")
	case o.oidc:
		return usageErrorf("give --approve or --oidc, not both")
	case a.tokenFile(o) != "" || a.getenv("DEVPI_CREDD_TOKEN") != "":
		return usageErrorf("--approve asks the running daemon for the job's token: leave out --token-file, $DEVPI_CREDD_TOKEN_FILE and $DEVPI_CREDD_TOKEN")
	}
	return nil
}

// daemonJobSpec is a job whose token is a session token of the running
// daemon for the server, narrowed offline by the job's flags as a stored
// token would be: the daemon applies approval and its limits, and no
// long-lived token leaves it. With --approve the request carries a code,
// and the token can upload for as long as the daemon's approval policy
// lets an approved token live. Only when no daemon answers, and the
// server's token is in a plain file or the keychain, does exec read it
// itself, without approval, as it always did.
func (a *app) daemonJobSpec(ctx context.Context, o jobOptions, srv config.Server) (job.Spec, error) {
	req := localapi.CredentialsRequest{URL: srv.URL.String(), Session: true, TTL: o.ttl.String()}
	c := a.daemonClient("", o.config)
	if o.approve {
		// Nobody types a code for a daemon that is not there.
		if _, err := c.Status(ctx); err != nil {
			return job.Spec{}, daemonError(err)
		}
		code, err := a.oneTimeCode(ctx, o.code, "devpi-credd: approve the job's uploads to "+srv.URL.String()+": one-time code: ")
		if err != nil {
			return job.Spec{}, err
		}
		req.Code = code
	}
	creds, err := c.Credentials(ctx, req)
	switch {
	case errors.Is(err, helper.ErrNotRunning) && !o.approve:
		sealed, serr := sealedStore(a.getenv).Exists()
		if serr != nil {
			return job.Spec{}, serr
		}
		if sealed {
			return job.Spec{}, &exitError{exitUnreachable, fmt.Errorf("%w: server %s's token is in the sealed store, which only the daemon opens: start it ('devpi-credd serve') and unlock it", err, srv.Name)}
		}
		root, err := srv.Backend().Load()
		return job.Spec{Server: srv, Root: root, TTL: o.ttl}, err
	case err != nil:
		return job.Spec{}, daemonError(err)
	}
	root, err := token.Parse(creds.Password)
	if err != nil {
		return job.Spec{}, fmt.Errorf("the daemon's session token: %w", err)
	}
	ttl := o.ttl
	if creds.Expires != 0 {
		ttl = min(ttl, time.Unix(creds.Expires, 0).Sub(a.now()).Truncate(time.Second))
	}
	if ttl < time.Second {
		return job.Spec{}, &exitError{exitFailed, errors.New("the daemon's session token for the job expires at once")}
	}
	if !o.approve {
		if st, err := c.Status(ctx); err == nil && st.Approval != nil && st.Approval.Uploads {
			a.infof("devpi-credd: approval is on: the job's tokens cannot upload; 'devpi-credd exec --approve' asks for a one-time code")
		}
	}
	return job.Spec{Server: srv, Root: root, TTL: ttl}, nil
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
	if file == "-" || o.code.codeStdin {
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
	return job.Options{Getenv: a.getenv, Now: a.now, Version: version, AuditLog: o.auditLog, ForChild: forChild, ChildOnly: o.approve,
		Logger: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// sealedStore is this user's sealed store (personal mode).
func sealedStore(getenv func(string) string) store.Sealed {
	return store.Sealed{Path: store.SealedPath(xdg.StateDir(getenv))}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/jobdir"
	"github.com/devpi-credd/devpi-credd/localapi"
	pybackend "github.com/devpi-credd/devpi-credd/packaging/python"
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
}

// job is a server and its long-lived token, held in memory only.
type job struct {
	cfg  *config.Config
	srv  config.Server
	root *token.Token
}

// tokenEnv names the variables that may carry the long-lived token; the
// child never sees them.
var tokenEnv = []string{"DEVPI_CREDD_TOKEN", "DEVPI_CREDD_TOKEN_FILE"}

func (a *app) prepareJob(o jobOptions) (*job, error) {
	if o.ttl < time.Second {
		return nil, usageErrorf("--ttl %s: at least 1s", o.ttl)
	}
	srv := config.Server{Name: "job", ReadScope: "index"}
	switch {
	case o.server != "" && o.url != "":
		return nil, usageErrorf("give --server or --url, not both")
	case o.server != "":
		cfg, err := config.Load(a.configPath(o.config), a.getenv)
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		s, ok := cfg.Server(o.server)
		if !ok {
			return nil, usageErrorf("the config has no server %q", o.server)
		}
		srv = *s
	case o.url != "":
		u, err := devpi.ParseRoot(o.url)
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		srv.URL = u
	default:
		return nil, usageErrorf("which server? give --url ROOT or --server NAME")
	}
	// The flags narrow what the config allows, never widen it.
	var err error
	if srv.Indexes, err = narrow("-i", srv.Indexes, o.indexes, func(l []string) error { _, err := token.Indexes(l...); return err }); err != nil {
		return nil, err
	}
	if srv.Projects, err = narrow("-p", srv.Projects, o.projects, nil); err != nil {
		return nil, err
	}
	if srv.Allowed, err = narrow("-a", srv.Allowed, o.allowed, nil); err != nil {
		return nil, err
	}
	// The job's daemon renews nobody's devpi-client login.
	srv.DevpiClient = false
	root, err := a.jobToken(o, srv)
	if err != nil {
		return nil, err
	}
	srv.TokenFile, srv.Keychain = "", false
	now := a.now()
	cfg := &config.Config{
		DefaultTTL: o.ttl, MaxTTL: o.ttl, MaxSessionTTL: o.ttl,
		Deadline: now.Add(o.ttl),
		Servers:  []config.Server{srv},
	}
	return &job{cfg: cfg, srv: srv, root: root}, nil
}

// narrow combines a configured list (nil: no limit) with a flag's (nil: not
// given) into their intersection; an empty intersection is an error.
func narrow(flag string, have, given []string, check func([]string) error) ([]string, error) {
	if given == nil {
		return have, nil
	}
	list, err := token.NormalizeList(given)
	if err == nil && check != nil {
		err = check(list)
	}
	if err != nil {
		return nil, usageErrorf("%s: %v", flag, err)
	}
	if have == nil {
		return list, nil
	}
	var out []string
	for _, x := range list {
		for _, h := range have {
			if x == h || token.NormalizeProject(x) == token.NormalizeProject(h) && flag == "-p" {
				out = append(out, x)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("%s %s: outside what the config allows (%s)", flag, strings.Join(list, ","), strings.Join(have, ","))
	}
	return out, nil
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

// newJobDaemon is a daemon on the job's config, with the token in memory;
// its audit log goes to auditLog, else into the job's directory.
func (a *app) newJobDaemon(j *job, dir, auditLog string) (*daemon.Daemon, error) {
	j.cfg.AuditLog = auditLog
	if auditLog == "" {
		j.cfg.AuditLog = filepath.Join(dir, "audit.log")
	}
	return daemon.New(daemon.Options{
		Config:  j.cfg,
		Getenv:  a.getenv,
		Logger:  slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Version: version,
		Now:     a.now,
		Backend: func(config.Server) store.Backend { return store.Memory{Token: j.root} },
	})
}

func (a *app) newExecCmd() *cobra.Command {
	var o jobOptions
	cmd := &cobra.Command{
		Use:   "exec [--server NAME | --url ROOT] [--token-file FILE] [--ttl D] [-i INDEX] [-p PROJECT] [-a PERMS] -- COMMAND ARGS...",
		Short: "Run a command (a CI job) with short-lived tokens only, then forget them",
		Long: `Run COMMAND with a private daemon of its own: pip, uv, twine and devpi-client
in it get short-lived tokens scoped by -i/-p/-a that expire --ttl after the
start at the latest. The long-lived token comes from --token-file (- for
standard input), $DEVPI_CREDD_TOKEN_FILE or $DEVPI_CREDD_TOKEN, stays in
this process's memory and is removed from the child's environment.

The child gets DEVPI_CREDD_SOCKET, PIP_KEYRING_PROVIDER=subprocess,
UV_KEYRING_PROVIDER=subprocess, a 'keyring' first on PATH, the keyring
backend on PYTHONPATH (for twine), and a devpi-client logged in with a
session token (DEVPI_CLIENTDIR). Signals are passed on; the exit code is the
command's. The socket and every temporary file are removed at the end.`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runExec(o, args) },
	}
	cmd.Flags().SetInterspersed(false)
	o.register(cmd.Flags())
	return cmd
}

func (a *app) runExec(o jobOptions, argv []string) (err error) {
	// A secret in this process's memory and environment: no core dumps, and
	// no /proc/PID/environ or mem for other processes of the user (the
	// child included).
	protectProcess()
	// Signals from here on: until the child runs, one ends the job (after
	// cleaning up); then they are passed on.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals()...)
	defer signal.Stop(sigs)

	j, err := a.prepareJob(o)
	if err != nil {
		return err
	}
	jd, err := a.jobDir(jobdir.ExecPrefix)
	if err != nil {
		return err
	}
	dir := jd.Path
	defer func() {
		if rerr := jd.Remove(); rerr != nil && err == nil {
			err = fmt.Errorf("removing %s: %w", dir, rerr)
		}
	}()
	j.cfg.Socket = filepath.Join(dir, "run", "socket")
	d, err := a.newJobDaemon(j, dir, o.auditLog)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx, nil) }()
	defer func() {
		cancel()
		if derr := <-ran; derr != nil && err == nil {
			err = derr
		}
		d.Close()
	}()
	if err := waitForDaemon(j.cfg.Socket, ran, sigs); err != nil {
		return err
	}
	env, err := a.jobEnv(j, d, dir)
	if err != nil {
		return err
	}
	if s, ok := pending(sigs); ok {
		return &exitError{128 + signalNumber(s), fmt.Errorf("stopped by %v before the command started", s)}
	}
	// When the token came from standard input, the child never gets the
	// file itself, which it could rewind or reopen (/proc/self/fd/0) to
	// read the token again: after --token-file -, what follows the token
	// comes through a pipe of the child's own; after a path that is
	// standard input under another name (/dev/stdin), nothing does.
	var stdin io.Reader = a.stdin
	switch a.tokenFromStdin(o) {
	case "-":
		stdin = struct{ io.Reader }{a.stdinLines}
	case "alias":
		stdin = nil
	}
	code, err := runChild(argv, env, stdin, a.stdout, a.stderr, sigs)
	if err != nil {
		return err
	}
	if n := countMints(j.cfg.AuditLog); n > 0 && o.auditLog == "" {
		a.infof("devpi-credd: the job got %d short-lived tokens for %s, all dead by %s", n, j.srv.URL, j.cfg.Deadline.Local().Format(localTime))
	}
	if code != 0 {
		return &exitError{code, errQuiet}
	}
	return nil
}

// tokenFromStdin says whether the long-lived token came from standard
// input: "-" for a token file "-", "alias" for a path that is standard
// input under another name (/dev/stdin, /proc/self/fd/0), "" otherwise.
func (a *app) tokenFromStdin(o jobOptions) string {
	file := a.tokenFile(o)
	if file == "-" {
		return "-"
	}
	in, ok := a.stdin.(*os.File)
	if file == "" || !ok {
		return ""
	}
	st, err := in.Stat()
	fst, ferr := os.Stat(file)
	if err == nil && ferr == nil && os.SameFile(st, fst) {
		return "alias"
	}
	return ""
}

// jobDir makes the job's private directory, which dies with the job even
// when the job is killed, after removing those of jobs that are gone.
func (a *app) jobDir(prefix string) (*jobdir.Dir, error) {
	jobdir.Sweep("", a.now())
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return jobdir.Create(prefix, self)
}

// pending returns a signal that arrived, if one did.
func pending(sigs <-chan os.Signal) (os.Signal, bool) {
	select {
	case s := <-sigs:
		return s, true
	default:
		return nil, false
	}
}

// countMints counts the audit log's mint lines.
func countMints(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"event":"mint"`) {
			n++
		}
	}
	return n
}

func waitForDaemon(socket string, ran chan error, sigs <-chan os.Signal) error {
	c := &helper.Client{Socket: socket}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return nil
		}
		select {
		case err := <-ran:
			ran <- err // for the deferred stop
			return fmt.Errorf("the job's daemon did not start: %w", err)
		case s := <-sigs:
			return &exitError{128 + signalNumber(s), fmt.Errorf("stopped by %v before the command started", s)}
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("the job's daemon did not start in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jobEnv is the child's environment: the caller's, without the long-lived
// token, pointed at the job's daemon.
func (a *app) jobEnv(j *job, d *daemon.Daemon, dir string) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return nil, err
	}
	for _, name := range []string{"keyring", "devpi-credd"} {
		if err := os.Symlink(self, filepath.Join(bin, name)); err != nil {
			return nil, err
		}
	}
	py := filepath.Join(dir, "python")
	files := map[string][]byte{
		filepath.Join(py, "devpi_credd_keyring", "__init__.py"):                       pybackend.Module,
		filepath.Join(py, "devpi_credd_keyring-0+exec.dist-info", "METADATA"):         []byte("Metadata-Version: 2.1\nName: devpi-credd-keyring\nVersion: 0+exec\n"),
		filepath.Join(py, "devpi_credd_keyring-0+exec.dist-info", "entry_points.txt"): []byte(pybackend.EntryPoints),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	clientDir, err := a.jobDevpiClient(j, d, dir)
	if err != nil {
		return nil, err
	}
	set := map[string]string{
		"DEVPI_CREDD_SOCKET":   j.cfg.Socket,
		"DEVPI_CREDD_BIN":      self,
		"PIP_KEYRING_PROVIDER": "subprocess",
		"UV_KEYRING_PROVIDER":  "subprocess",
		"PATH":                 bin + string(os.PathListSeparator) + a.getenv("PATH"),
		"PYTHONPATH":           joinNonEmpty(py, a.getenv("PYTHONPATH")),
		"DEVPI_CLIENTDIR":      clientDir,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; ours || k == tokenEnv[0] || k == tokenEnv[1] {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env, nil
}

func joinNonEmpty(a, b string) string {
	if b == "" {
		return a
	}
	return a + string(os.PathListSeparator) + b
}

// jobDevpiClient is a devpi-client state directory of the job's own, on the
// server and logged in with a session token of the job.
func (a *app) jobDevpiClient(j *job, d *daemon.Daemon, dir string) (string, error) {
	cd := devpi.StateDir{Dir: filepath.Join(dir, "devpi-client")}
	creds, aerr := d.MintFor(context.Background(), localapi.CredentialsRequest{URL: j.srv.URL.String(), Session: true}, daemon.Self("exec: devpi-client login"), "")
	if aerr != nil {
		return "", aerr
	}
	if err := cd.SetRoot(j.srv.URL.String()); err != nil {
		return "", err
	}
	if err := cd.SetAuth(j.srv.URL.String(), devpi.Auth{User: creds.Username, Secret: creds.Password}); err != nil {
		return "", err
	}
	return cd.Dir, nil
}

// runChild runs argv with the signals from sigs passed on, and returns its
// exit code: 128+N when signal N ended it; 126 when it cannot be run, 127
// when it is not found, as shells do.
func runChild(argv, env []string, stdin io.Reader, stdout, stderr io.Writer, sigs <-chan os.Signal) (int, error) {
	c := exec.Command(argv[0], argv[1:]...)
	c.Env, c.Stdin, c.Stdout, c.Stderr = env, stdin, stdout, stderr
	c.SysProcAttr = childProcAttr()
	// A stdin that is not a file is copied by a goroutine; do not wait for
	// it to close once the child is gone.
	c.WaitDelay = 2 * time.Second
	unlock := lockThread() // the parent-death signal belongs to this thread
	defer unlock()
	if err := c.Start(); err != nil {
		code := 127
		if errors.Is(err, fs.ErrPermission) {
			code = 126
		}
		return 0, &exitError{code, fmt.Errorf("starting %s: %w", argv[0], err)}
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	for {
		select {
		case s := <-sigs:
			if !fromTerminal(s) {
				_ = c.Process.Signal(s)
			}
		case err := <-done:
			var ee *exec.ExitError
			switch {
			case err == nil:
				return 0, nil
			case errors.As(err, &ee):
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			default:
				return 0, err
			}
		}
	}
}

func (a *app) newEnvCmd() *cobra.Command {
	var o jobOptions
	var format string
	cmd := &cobra.Command{
		Use:   "env [--server NAME | --url ROOT] [--token-file FILE] [--ttl D] -i USER/INDEX [-p PROJECT] [--format shell|dotenv|github]",
		Short: "Print variables holding one short-lived upload token, for CI systems that want variables",
		Long: `Derive one upload token for the index given with -i (scoped by -p and -a,
expiring after --ttl) and print TWINE_USERNAME, TWINE_PASSWORD,
TWINE_REPOSITORY_URL, UV_PUBLISH_URL, UV_PUBLISH_USERNAME and
UV_PUBLISH_PASSWORD. --format shell (default) prints export lines for eval;
dotenv prints KEY=VALUE lines; github appends them to $GITHUB_ENV and prints
an ::add-mask:: command so that the token is masked in the job's log.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runEnv(o, format) },
	}
	o.register(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "shell", "shell, dotenv or github")
	return cmd
}

func (a *app) runEnv(o jobOptions, format string) error {
	protectProcess()
	if format != "shell" && format != "dotenv" && format != "github" {
		return usageErrorf("--format %q: use shell, dotenv or github", format)
	}
	if len(o.indexes) == 0 {
		return usageErrorf("-i USER/INDEX: env makes an upload token, for one index")
	}
	j, err := a.prepareJob(o)
	if err != nil {
		return err
	}
	if len(j.srv.Indexes) != 1 {
		return usageErrorf("-i: give exactly one index (got %s)", strings.Join(j.srv.Indexes, ", "))
	}
	jd, err := a.jobDir(jobdir.EnvPrefix)
	if err != nil {
		return err
	}
	defer jd.Remove()
	dir := jd.Path
	d, err := a.newJobDaemon(j, dir, o.auditLog)
	if err != nil {
		return err
	}
	defer d.Close()
	upload := j.srv.URL.ResolveReference(&url.URL{Path: j.srv.Indexes[0] + "/"}).String()
	creds, aerr := d.MintFor(context.Background(), localapi.CredentialsRequest{URL: upload}, daemon.Self("env"), "")
	if aerr != nil {
		return &exitError{exitFailed, aerr}
	}
	vars := [][2]string{
		{"TWINE_USERNAME", creds.Username}, {"TWINE_PASSWORD", creds.Password}, {"TWINE_REPOSITORY_URL", upload},
		{"UV_PUBLISH_URL", upload}, {"UV_PUBLISH_USERNAME", creds.Username}, {"UV_PUBLISH_PASSWORD", creds.Password},
	}
	var b strings.Builder
	for _, kv := range vars {
		switch format {
		case "shell":
			fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
		default:
			fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
		}
	}
	if format != "github" {
		_, err = io.WriteString(a.stdout, b.String())
		return err
	}
	path := a.getenv("GITHUB_ENV")
	if path == "" {
		return usageErrorf("--format github: $GITHUB_ENV is not set (is this a GitHub Actions step?)")
	}
	fmt.Fprintf(a.stdout, "::add-mask::%s\n", creds.Password)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	a.infof("devpi-credd: wrote TWINE_* and UV_PUBLISH_* to $GITHUB_ENV; the token expires %s", time.Unix(creds.Expires, 0).Local().Format(localTime))
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Package job runs a CI job with short-lived tokens only: a private daemon
// of its own, in a private directory that dies with the job, holding the
// long-lived token in memory; the job's child gets the daemon's socket,
// keyring links, the Python keyring backend and a devpi-client login, and
// every token it gets expires with the job. devpi-credd exec and env are
// its command lines.
package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/jobdir"
	"github.com/devpi-credd/devpi-credd/localapi"
	pybackend "github.com/devpi-credd/devpi-credd/packaging/python"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// TokenEnv names the variables that may carry the long-lived token or
// the identity token it is traded for; the child never sees them.
var TokenEnv = []string{"DEVPI_CREDD_TOKEN", "DEVPI_CREDD_TOKEN_FILE", exchange.IDTokenEnv}

// Spec is what a job is: a server, its limits (already narrowed), the
// long-lived token, and how long the job's tokens may live.
type Spec struct {
	Server config.Server
	Root   *token.Token
	TTL    time.Duration
	// SecretEnv names more variables that held the job's secret (the
	// identity token's, whose name follows the audience): the child
	// never sees them either.
	SecretEnv []string
}

// Options are what a job may touch of the outside world. Zero values get
// defaults.
type Options struct {
	// Self is devpi-credd's executable: the keyring links and the reaper
	// of the job's directory run it. Default: os.Executable.
	Self string
	// Environ is the environment the child starts from (default
	// os.Environ()); Getenv reads the job's own (default os.Getenv).
	Environ []string
	Getenv  func(string) string
	Now     func() time.Time
	Logger  *slog.Logger
	Version string
	// AuditLog, when set, keeps the audit lines; else they go into the
	// job's directory and away with it.
	AuditLog string
	// ForChild sets up what a child process uses: the socket, the keyring
	// links, the Python backend and devpi-client's login (exec). Without
	// it the job only mints through Mint (env).
	ForChild bool
	// ChildOnly: the job's daemon answers only the child started by Run
	// and its descendants (exec --approve, whose tokens can upload), not
	// every process of the user that finds the socket. Linux only (see
	// CanAdmitChildOnly).
	ChildOnly bool
}

// Job is a started job. Close ends it.
type Job struct {
	spec     Spec
	opts     Options
	dir      *jobdir.Dir
	d        *daemon.Daemon
	deadline time.Time
	socket   string
	env      []string
	stop     context.CancelFunc
	ran      chan error
	// child is the pid of the command Run started, while it runs; 0
	// before and after.
	child atomic.Int64
}

// Start sets the job up: its private directory (with a reaper, so that it
// goes even when this process is killed), its daemon on a config in
// memory, listening before Start returns, and for a child the links, the
// backend and devpi-client's state. Every token ends by now + spec.TTL.
func Start(ctx context.Context, spec Spec, opts Options) (j *Job, err error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if spec.TTL < time.Second {
		return nil, fmt.Errorf("the job's ttl %s: at least 1s", spec.TTL)
	}
	if opts.ChildOnly && !CanAdmitChildOnly {
		return nil, ErrChildOnly
	}
	prefix := jobdir.EnvPrefix
	if opts.ForChild {
		prefix = jobdir.ExecPrefix
	}
	jobdir.Sweep("", opts.Now())
	dir, err := jobdir.Create(prefix, opts.Self)
	if err != nil {
		return nil, err
	}
	j = &Job{spec: spec, opts: opts, dir: dir, deadline: opts.Now().Add(spec.TTL)}
	defer func() {
		if err != nil {
			_ = j.Close()
		}
	}()
	if err := j.startDaemon(); err != nil {
		return nil, err
	}
	if opts.ForChild {
		if j.env, err = j.childEnv(ctx); err != nil {
			return nil, err
		}
	}
	return j, nil
}

func (o *Options) fill() error {
	if o.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if o.Self, err = filepath.EvalSymlinks(self); err != nil {
			return err
		}
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// startDaemon runs the job's daemon: the config and the token in memory,
// every token's expiry bounded by the deadline.
func (j *Job) startDaemon() error {
	srv := j.spec.Server
	srv.TokenFile, srv.Keychain = "", false
	// The job's daemon renews nobody's devpi-client login.
	srv.DevpiClient = false
	if srv.ReadScope == "" {
		srv.ReadScope = "index"
	}
	j.socket = filepath.Join(j.dir.Path, "run", "socket")
	cfg := &config.Config{
		Socket: j.socket, AuditLog: j.opts.AuditLog,
		DefaultTTL: j.spec.TTL, MaxTTL: j.spec.TTL, MaxSessionTTL: j.spec.TTL,
		Servers: []config.Server{srv},
	}
	if cfg.AuditLog == "" {
		cfg.AuditLog = filepath.Join(j.dir.Path, "audit.log")
	}
	root := j.spec.Root
	dopts := daemon.Options{
		Config: cfg, Getenv: j.opts.Getenv, Logger: j.opts.Logger, Version: j.opts.Version, Now: j.opts.Now,
		Deadline: j.deadline,
		Backend:  func(config.Server) store.Backend { return store.Memory{Token: root} },
	}
	if j.opts.ChildOnly {
		dopts.AdmitPeer = j.admitPeer
	}
	d, err := daemon.New(dopts)
	if err != nil {
		return err
	}
	j.d = d
	if !j.opts.ForChild {
		return nil
	}
	l, err := d.Listen()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.stop, j.ran = cancel, make(chan error, 1)
	go func() { j.ran <- d.RunOn(ctx, l, nil) }()
	return nil
}

// childEnv makes the links, the backend and devpi-client's state, and
// returns the child's environment: the caller's, without the long-lived
// token, pointed at the job's daemon.
func (j *Job) childEnv(ctx context.Context) ([]string, error) {
	bin := filepath.Join(j.dir.Path, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return nil, err
	}
	for name, target := range map[string]string{"keyring": LeanHelper(j.opts.Self), "devpi-credd": j.opts.Self} {
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			return nil, err
		}
	}
	py := filepath.Join(j.dir.Path, "python")
	if err := writeBackend(py); err != nil {
		return nil, err
	}
	clientDir, err := j.devpiClient(ctx)
	if err != nil {
		return nil, err
	}
	set := map[string]string{
		"DEVPI_CREDD_SOCKET":   j.socket,
		"DEVPI_CREDD_BIN":      j.opts.Self,
		"PIP_KEYRING_PROVIDER": "subprocess",
		"UV_KEYRING_PROVIDER":  "subprocess",
		"PATH":                 joinList(bin, j.opts.Getenv("PATH")),
		"PYTHONPATH":           joinList(py, j.opts.Getenv("PYTHONPATH")),
		"DEVPI_CLIENTDIR":      clientDir,
	}
	var env []string
	for _, kv := range j.opts.Environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; ours || slices.Contains(TokenEnv, k) || slices.Contains(j.spec.SecretEnv, k) {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env, nil
}

// writeBackend puts the keyring backend, with an entry point, where the
// child's Python finds it on PYTHONPATH: twine then uses it with nothing
// installed.
func writeBackend(py string) error {
	files := map[string][]byte{
		filepath.Join(py, "devpi_credd_keyring", "__init__.py"):                       pybackend.Module,
		filepath.Join(py, "devpi_credd_keyring-0+exec.dist-info", "METADATA"):         []byte("Metadata-Version: 2.1\nName: devpi-credd-keyring\nVersion: 0+exec\n"),
		filepath.Join(py, "devpi_credd_keyring-0+exec.dist-info", "entry_points.txt"): []byte(pybackend.EntryPoints),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// devpiClient is a devpi-client state directory of the job's own, on the
// server and logged in with a session token of the job.
func (j *Job) devpiClient(ctx context.Context) (string, error) {
	root := j.spec.Server.URL.String()
	creds, err := j.Mint(ctx, localapi.CredentialsRequest{URL: root, Session: true}, "exec: devpi-client login")
	if err != nil {
		return "", err
	}
	cd := devpi.StateDir{Dir: filepath.Join(j.dir.Path, "devpi-client")}
	if err := cd.Login(root, devpi.Auth{User: creds.Username, Secret: creds.Password}); err != nil {
		return "", err
	}
	return cd.Dir, nil
}

func joinList(a, b string) string {
	if b == "" {
		return a
	}
	return a + string(os.PathListSeparator) + b
}

// Mint asks the job's daemon for a token, as this process (what names why,
// for the audit line).
func (j *Job) Mint(ctx context.Context, req localapi.CredentialsRequest, what string) (*localapi.Credentials, error) {
	return j.d.MintFor(ctx, req, daemon.InProcess(what), "")
}

// UploadURL is the upload URL of the job's one index, or an error when the
// job is limited to none or to several.
func (j *Job) UploadURL() (string, error) {
	ix := j.spec.Server.Limits.Indexes
	if len(ix) != 1 {
		return "", fmt.Errorf("give exactly one index with -i (got %s)", strings.Join(ix, ", "))
	}
	return j.spec.Server.URL.ResolveReference(&url.URL{Path: ix[0] + "/"}).String(), nil
}

// ErrChildOnly: Options.ChildOnly on a system that cannot tell a
// caller's ancestry.
var ErrChildOnly = errors.New("a job whose daemon answers only its own processes needs Linux, which tells a caller's parents in /proc")

// admitPeer lets a caller of the job's daemon's socket in when it is the
// child Run started or one of its descendants: with ChildOnly, another
// process of the user that found the socket gets nothing from a job whose
// tokens can upload. (The job's own mints, Mint, do not come through the
// socket.)
func (j *Job) admitPeer(p daemon.Peer) error {
	child := int(j.child.Load())
	switch {
	case child == 0:
		return errors.New("this job's daemon answers only the job's command, which is not running")
	case !p.Known || !descendsFrom(p.PID, child):
		return fmt.Errorf("this job's daemon answers only the job's command and its processes, not pid %d", p.PID)
	}
	return nil
}

// Env is the child's environment.
func (j *Job) Env() []string { return j.env }

// Dir is the job's private directory.
func (j *Job) Dir() string { return j.dir.Path }

// Deadline is when the job's last token dies.
func (j *Job) Deadline() time.Time { return j.deadline }

// Minted is how many tokens the job's daemon handed out.
func (j *Job) Minted() int64 { return j.d.Status().Minted }

// Close stops the daemon and removes the job's directory.
func (j *Job) Close() error {
	var errs []error
	if j.stop != nil {
		j.stop()
		errs = append(errs, <-j.ran)
		j.stop = nil
	}
	if j.d != nil {
		errs = append(errs, j.d.Close())
	}
	if err := j.dir.Remove(); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", j.dir.Path, err))
	}
	return errors.Join(errs...)
}

// LeanHelper is devpi-credd-keyring installed beside self, the devpi-credd
// executable, or self when there is none: the keyring command line runs
// for every lookup, and the lean binary starts at the floor.
func LeanHelper(self string) string {
	name := "devpi-credd-keyring"
	if filepath.Ext(self) == ".exe" {
		name += ".exe"
	}
	lean := filepath.Join(filepath.Dir(self), name)
	if st, err := os.Stat(lean); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return lean
	}
	return self
}

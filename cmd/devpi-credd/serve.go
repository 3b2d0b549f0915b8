package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/internal/harden"
	"github.com/devpi-credd/devpi-credd/internal/jobdir"
	"github.com/devpi-credd/devpi-credd/internal/svc"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

type serveOptions struct {
	config    string
	logLevel  string
	logFormat string
}

// configFlag registers --config, shared by the commands that read it.
func configFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "config", "", "config file (default $DEVPI_CREDD_CONFIG, else $XDG_CONFIG_HOME/devpi-credd/config.toml)")
}

func (a *app) configPath(flag string) string {
	if flag != "" {
		return flag
	}
	return xdg.ConfigFile(a.getenv)
}

func (a *app) newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "Run the daemon that mints short-lived tokens on a local socket",
		Long: `Run the daemon. It holds each configured server's long-lived token and,
per request on its Unix socket, mints a derived token that expires in
minutes and is scoped to the index, project and operation of the URL asked
for. Only its own user (and root, and allow_uids) is answered. Every mint and
refusal is a JSON line in the audit log; the token never is.

The config (TOML) and the token files are watched: edits and rotations take
effect without a restart; SIGHUP reloads too. A config that does not load is
logged and ignored, and the previous one keeps serving. SIGTERM or SIGINT
stops the daemon and removes its socket.

  socket = "..."        # default $XDG_RUNTIME_DIR/devpi-credd/socket
  default_ttl = "5m"
  max_ttl = "1h"
  max_session_ttl = "10h"  # session tokens (devpi-login)
  audit_log = "..."     # default $XDG_STATE_HOME/devpi-credd/audit.log
  mint_budget = 0       # tokens a minute per caller (uid, program, parent); 0: no limit
  allow_uids = []       # other uids that may ask for scoped tokens, on shared_socket
  shared_socket = "..." # needed with allow_uids, in a directory they can reach
  allow_uids_grant = [] # "session", "lock": the owner's powers, for allow_uids too
  [servers.NAME]        # 'devpi-credd token login' adds these
  url = "http://127.0.0.1:3141"
  token_file = "..."    # default $XDG_STATE_HOME/devpi-credd/tokens/NAME.token
  keychain = false      # or keep the token in the OS keychain
  indexes = []          # added to every token for this server
  projects = []
  allowed = []
  read_scope = "index"  # or "server": read tokens for every index
  devpi_client = false  # renew devpi-client's login that devpi-login wrote`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runServe(cmd.Context(), o) },
	}
	configFlag(cmd, &o.config)
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

func (a *app) logger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(a.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(a.stderr, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: use text or json", format)
}

func (a *app) runServe(ctx context.Context, o serveOptions) error {
	log, err := a.logger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	// Job directories of exec runs that were killed: sockets and session
	// tokens not to leave lying around.
	for _, p := range jobdir.Sweep("", a.now()) {
		log.Info("removed the directory of a job that is gone", "dir", p)
	}
	// The daemon's memory holds the root tokens (and, opened, the sealed
	// store): out of reach of the user's other processes, no core file.
	hardening := append(harden.Process(), harden.Memory()...)
	for _, h := range hardening {
		log.Warn("memory not fully protected", "reason", h)
	}
	path := a.configPath(o.config)
	state := xdg.StateDir(a.getenv)
	d, err := daemon.New(daemon.Options{ConfigPath: path, Getenv: a.getenv, Logger: log, Version: version,
		LockFile: filepath.Join(state, "locked"), StateDir: state, Hardening: hardening})
	if err != nil {
		return startError(path, err)
	}
	defer d.Close()
	if managed, err := svc.RunManaged(func(ctx context.Context) error { return d.Run(ctx, nil) }); managed {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	notifyReload(hup)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	if err := a.serveOn(ctx, d, reload); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// serveOn serves on the socket systemd passed (socket activation: the first
// lookup starts the daemon), once the daemon has checked it, else on the
// configured one.
func (a *app) serveOn(ctx context.Context, d *daemon.Daemon, reload <-chan struct{}) error {
	ls, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("the sockets systemd passed: %w", err)
	}
	if len(ls) == 0 {
		return d.Run(ctx, reload)
	}
	return d.RunActivated(ctx, ls, reload)
}

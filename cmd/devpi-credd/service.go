package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kardianos/service"
	"github.com/spf13/cobra"
)

const serviceName = "devpi-credd"

// systemdUnit is the unit devpi-credd installs. kardianos/service's own
// says WantedBy=multi-user.target, which a user manager never reaches.
// Its template language: {{Name}}, {{Path | cmdEscape}}, no dots.
const systemdUnit = `[Unit]
Description={{Description}}
Documentation=https://github.com/devpi-credd/devpi-credd

[Service]
Type=simple
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
UMask=0077
NoNewPrivileges=yes

[Install]
WantedBy=@WANTEDBY@
`

type serviceOptions struct {
	config string
	system bool
}

// program is what kardianos/service starts and stops. For install and the
// other actions it does nothing; under the Windows service control manager,
// which talks to the process, it runs the daemon (see serveManaged).
type program struct {
	run    func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan error
}

func (p *program) Start(service.Service) error {
	if p.run == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.run(ctx) }()
	return nil
}

func (p *program) Stop(service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	return <-p.done
}

// serveManaged runs the daemon under a service manager that expects the
// process to answer it (Windows); elsewhere a service is a plain process.
func serveManaged(run func(ctx context.Context) error) (bool, error) {
	if runtime.GOOS != "windows" || service.Interactive() {
		return false, nil
	}
	s, err := service.New(&program{run: run}, &service.Config{Name: serviceName})
	if err != nil {
		return true, err
	}
	return true, s.Run()
}

func (a *app) newServiceCmd() *cobra.Command {
	var o serviceOptions
	cmd := &cobra.Command{
		Use:   "service install|uninstall|start|stop|restart|status [--config FILE] [--system]",
		Short: "Run the daemon as a service: a systemd user unit, a launchd agent, a Windows service",
		Long: `Install devpi-credd serve as a service that starts at login: a systemd user
unit (WantedBy=default.target) on Linux, a launchd LaunchAgent (RunAtLoad) on
macOS, a Windows service. --system installs a system-wide service instead.

On Linux a user service exists only under systemd, so 'install' always
writes a systemd user unit; where 'systemctl --user' cannot be reached (no
user manager, a container), it still writes the unit and says how to enable
it. 'status' says whether it is installed and running, and where the unit is.`,
		Args:      args(cobra.ExactArgs(1)),
		ValidArgs: []string{"install", "uninstall", "start", "stop", "restart", "status"},
		RunE:      func(cmd *cobra.Command, args []string) error { return a.runService(o, args[0]) },
	}
	configFlag(cmd, &o.config)
	cmd.Flags().BoolVar(&o.system, "system", false, "a system-wide service instead of the user's")
	return cmd
}

func (a *app) newService(o serviceOptions) (service.Service, string, error) {
	self, err := a.selfPath()
	if err != nil {
		return nil, "", err
	}
	cfgPath, err := filepath.Abs(a.configPath(o.config))
	if err != nil {
		return nil, "", err
	}
	wantedBy := "default.target"
	if o.system {
		wantedBy = "multi-user.target"
	}
	args := []string{"serve", "--config", cfgPath}
	if runtime.GOOS == "linux" {
		// systemd expands % specifiers and $VARIABLES in ExecStart.
		for i, a := range args {
			args[i] = strings.NewReplacer("%", "%%", "$", "$$").Replace(a)
		}
	}
	c := &service.Config{
		Name:        serviceName,
		DisplayName: "devpi-credd",
		Description: "short-lived devpi tokens for pip, uv, twine and devpi-client",
		Executable:  self,
		Arguments:   args,
		Option: service.KeyValue{
			"UserService":   !o.system,
			"SystemdScript": strings.Replace(systemdUnit, "@WANTEDBY@", wantedBy, 1),
			"RunAtLoad":     true,
			"KeepAlive":     true,
		},
	}
	if o.system {
		// A system-wide service still runs as this user, with this user's
		// config, token store and socket: not as root.
		if u, err := user.Current(); err == nil && u.Uid != "0" {
			c.UserName = u.Username
		}
	}
	// devpi-credd writes systemd units on Linux, whatever the library's
	// detection says (in a container it would pick SysV).
	if runtime.GOOS == "linux" {
		for _, sys := range service.AvailableSystems() {
			if sys.String() == "linux-systemd" {
				s, err := sys.New(&program{}, c)
				if err != nil {
					return nil, "", err
				}
				return s, a.unitPath(o), nil
			}
		}
	}
	s, err := service.New(&program{}, c)
	if err != nil {
		return nil, "", err
	}
	return s, a.unitPath(o), nil
}

// unitPath is where the service's definition lives, for messages and status.
func (a *app) unitPath(o serviceOptions) string {
	home := a.getenv("HOME")
	switch runtime.GOOS {
	case "linux":
		if o.system {
			return "/etc/systemd/system/" + serviceName + ".service"
		}
		return filepath.Join(home, ".config", "systemd", "user", serviceName+".service")
	case "darwin":
		if o.system {
			return "/Library/LaunchDaemons/" + serviceName + ".plist"
		}
		return filepath.Join(home, "Library", "LaunchAgents", serviceName+".plist")
	}
	return "the Windows service " + serviceName
}

func (a *app) runService(o serviceOptions, action string) error {
	if runtime.GOOS == "windows" && !o.system && action == "install" {
		return usageErrorf("Windows services are system-wide: pass --system (the service runs as this user)")
	}
	s, unit, err := a.newService(o)
	if err != nil {
		return err
	}
	installed := func() bool {
		if runtime.GOOS == "windows" {
			_, err := s.Status()
			return !errors.Is(err, service.ErrNotInstalled)
		}
		_, err := os.Stat(unit)
		return err == nil
	}
	userFlag := " --user"
	if o.system {
		userFlag = ""
	}
	switch action {
	case "install":
		if installed() {
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is already installed (%s); 'devpi-credd service uninstall' first", unit)}
		}
		if err := prepareUnitDir(unit); err != nil {
			return err
		}
		err := s.Install()
		if ferr := fixUnitMode(unit); ferr != nil && err == nil {
			err = ferr
		}
		if err != nil {
			if runtime.GOOS == "linux" && installed() {
				fmt.Fprintf(a.stdout, "wrote %s; systemctl%s cannot be reached here (%s): in a login session run: systemctl%s enable --now %s\n",
					unit, userFlag, oneLine(err.Error()), userFlag, serviceName)
				return nil
			}
			return fmt.Errorf("installing the service: %w", err)
		}
		fmt.Fprintf(a.stdout, "installed %s (starts at %s); start it now with: devpi-credd service start\n", unit, map[bool]string{true: "boot", false: "login"}[o.system])
		return nil
	case "uninstall":
		if !installed() {
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is not installed (no %s)", unit)}
		}
		_ = s.Stop()
		if err := s.Uninstall(); err != nil {
			// Without a reachable service manager, remove the unit alone.
			if runtime.GOOS == "linux" && installed() {
				if rerr := os.Remove(unit); rerr != nil {
					return fmt.Errorf("uninstalling the service: %w", rerr)
				}
				fmt.Fprintf(a.stdout, "removed %s; systemctl%s cannot be reached here: run systemctl%s daemon-reload in a login session\n", unit, userFlag, userFlag)
				return nil
			}
			return fmt.Errorf("uninstalling the service: %w", err)
		}
		fmt.Fprintf(a.stdout, "uninstalled %s\n", unit)
		return nil
	case "status":
		if !installed() {
			fmt.Fprintf(a.stdout, "not installed (no %s)\n", unit)
			return &exitError{exitFailed, errQuiet}
		}
		var state string
		if runtime.GOOS == "linux" && !o.system {
			// kardianos/service 1.3 asks the system manager even for a user
			// unit: ask the user's manager.
			state = userUnitState()
		} else {
			st, err := s.Status()
			state = map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}[st]
			if err != nil || state == "" {
				state = "state unknown"
				if err != nil {
					state += " (" + oneLine(err.Error()) + ")"
				}
			}
		}
		fmt.Fprintf(a.stdout, "installed: %s\n%s\n", unit, state)
		return nil
	case "start", "stop", "restart":
		if !installed() {
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is not installed (no %s); 'devpi-credd service install' first", unit)}
		}
		if err := service.Control(s, action); err != nil {
			return fmt.Errorf("%s: %s", action, oneLine(err.Error()))
		}
		fmt.Fprintf(a.stdout, "%s: done\n", action)
		return nil
	}
	return usageErrorf("unknown action %q: use install, uninstall, start, stop, restart or status", action)
}

// userUnitState asks the user's systemd manager about the unit.
func userUnitState() string {
	out, err := exec.Command("systemctl", "--user", "is-active", serviceName+".service").Output()
	state := strings.TrimSpace(string(out))
	switch {
	case state == "active" || state == "activating" || state == "reloading":
		return "running"
	case state == "inactive" || state == "failed" || state == "deactivating":
		return "not running (" + state + ")"
	case err != nil:
		return "state unknown: systemctl --user cannot be reached here"
	}
	return "state unknown (" + state + ")"
}

// prepareUnitDir creates the unit's directory, 0755 whatever the umask:
// kardianos/service would create it with os.ModePerm, which under umask 000
// lets anyone put a unit there that runs as this user.
func prepareUnitDir(unit string) error {
	if runtime.GOOS == "windows" || !filepath.IsAbs(unit) {
		return nil
	}
	dir := filepath.Dir(unit)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	// Each missing level separately: MkdirAll's mode is filtered by the
	// umask, and no level may end up writable by others.
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("securing %s: %w", d, err)
		}
	}
	return nil
}

// fixUnitMode makes the unit (or launchd plist) 0644: the library writes
// the plist with os.Create, which under umask 000 is writable by anyone.
func fixUnitMode(unit string) error {
	if runtime.GOOS == "windows" || !filepath.IsAbs(unit) {
		return nil
	}
	if err := os.Chmod(unit, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("securing %s: %w", unit, err)
	}
	return nil
}

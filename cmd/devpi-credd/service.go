package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/internal/svc"
)

type serviceOptions struct {
	config string
	system bool
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

func (a *app) runService(o serviceOptions, action string) error {
	if runtime.GOOS == "windows" && !o.system && action == "install" {
		return usageErrorf("Windows services are system-wide: pass --system (the service runs as this user)")
	}
	self, err := a.selfPath()
	if err != nil {
		return err
	}
	cfgPath, err := filepath.Abs(a.configPath(o.config))
	if err != nil {
		return err
	}
	m, err := svc.New(svc.Options{Executable: self, Config: cfgPath, System: o.system})
	if err != nil {
		return err
	}
	userFlag := " --user"
	if o.system {
		userFlag = ""
	}
	unit := m.Unit()
	var unreachable *svc.UnreachableError
	switch action {
	case "install":
		err := m.Install()
		switch {
		case errors.Is(err, svc.ErrInstalled):
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is already installed (%s); 'devpi-credd service uninstall' first", unit)}
		case errors.As(err, &unreachable):
			fmt.Fprintf(a.stdout, "wrote %s; systemctl%s cannot be reached here (%s): in a login session run: systemctl%s enable --now %s\n",
				unit, userFlag, unreachable.Reason, userFlag, svc.Name)
			return nil
		case err != nil:
			return fmt.Errorf("installing the service: %w", err)
		}
		fmt.Fprintf(a.stdout, "installed %s (starts at %s); start it now with: devpi-credd service start\n", unit, map[bool]string{true: "boot", false: "login"}[o.system])
	case "uninstall":
		err := m.Uninstall()
		switch {
		case errors.Is(err, svc.ErrNotInstalled):
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is not installed (no %s)", unit)}
		case errors.As(err, &unreachable):
			fmt.Fprintf(a.stdout, "removed %s; systemctl%s cannot be reached here: run systemctl%s daemon-reload in a login session\n", unit, userFlag, userFlag)
			return nil
		case err != nil:
			return fmt.Errorf("uninstalling the service: %w", err)
		}
		fmt.Fprintf(a.stdout, "uninstalled %s\n", unit)
	case "status":
		if !m.Installed() {
			fmt.Fprintf(a.stdout, "not installed (no %s)\n", unit)
			return &exitError{exitFailed, errQuiet}
		}
		fmt.Fprintf(a.stdout, "installed: %s\n%s\n", unit, m.State())
	case "start", "stop", "restart":
		err := m.Control(action)
		switch {
		case errors.Is(err, svc.ErrNotInstalled):
			return &exitError{exitFailed, fmt.Errorf("devpi-credd is not installed (no %s); 'devpi-credd service install' first", unit)}
		case err != nil:
			return fmt.Errorf("%s: %w", action, err)
		}
		fmt.Fprintf(a.stdout, "%s: done\n", action)
	default:
		return usageErrorf("unknown action %q: use install, uninstall, start, stop, restart or status", action)
	}
	return nil
}

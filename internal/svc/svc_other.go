//go:build !linux

package svc

import (
	"path/filepath"
	"runtime"

	"github.com/kardianos/service"
)

// unitTemplate: systemd units are Linux only.
func unitTemplate(bool) string { return "" }

func escapeArgs(args []string) []string { return args }

func newService(c *service.Config) (service.Service, error) { return service.New(&program{}, c) }

func unitPath(o Options, home string) string {
	switch runtime.GOOS {
	case "darwin":
		if o.System {
			return "/Library/LaunchDaemons/" + Name + ".plist"
		}
		return filepath.Join(home, "Library", "LaunchAgents", Name+".plist")
	case "windows":
		return "the Windows service " + Name
	}
	return Name
}

func userUnitState() string { return "state unknown" }

func socketPath(Options, string) string { return "" }

var socketUnit string

func systemctl(...string) error { return nil }

package svc

import (
	_ "embed"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
)

// unit is the systemd unit devpi-credd installs. kardianos/service's own
// says WantedBy=multi-user.target, which a user manager never reaches.
// Its template language: {{Name}}, {{Path | cmdEscape}}, no dots.
const unit = `[Unit]
Description={{Description}}
Documentation=https://github.com/devpi-credd/devpi-credd
@SOCKET@
[Service]
Type=simple
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
UMask=0077
NoNewPrivileges=yes

[Install]
@ALSO@WantedBy=@WANTEDBY@
`

// socketUnit starts the daemon on the first lookup (systemd socket
// activation); it is the one the packages install too.
//
//go:embed devpi-credd.socket
var socketUnit string

// unitTemplate is the service unit: a user's is started by its socket
// (socket activation) and at login; a system-wide one at boot, without a
// socket (it runs as the user, in a runtime directory systemd does not
// make for it).
func unitTemplate(system bool) string {
	if system {
		return strings.NewReplacer("@SOCKET@", "", "@ALSO@", "", "@WANTEDBY@", "multi-user.target").Replace(unit)
	}
	return strings.NewReplacer("@SOCKET@", "Requires="+Name+".socket\nAfter="+Name+".socket\n",
		"@ALSO@", "Also="+Name+".socket\n", "@WANTEDBY@", "default.target").Replace(unit)
}

// socketPath is where a user service's socket unit goes: beside the
// service's.
func socketPath(o Options, unit string) string {
	if o.System {
		return ""
	}
	return strings.TrimSuffix(unit, ".service") + ".socket"
}

// systemctl runs systemctl --user with args.
func systemctl(args ...string) error {
	return exec.Command("systemctl", append([]string{"--user"}, args...)...).Run()
}

// escapeArgs: systemd expands % specifiers and $VARIABLES in ExecStart.
func escapeArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.NewReplacer("%", "%%", "$", "$$").Replace(a)
	}
	return out
}

// newService makes a systemd service, whatever the library's detection
// says (in a container it would pick SysV).
func newService(c *service.Config) (service.Service, error) {
	for _, sys := range service.AvailableSystems() {
		if sys.String() == "linux-systemd" {
			return sys.New(&program{}, c)
		}
	}
	return service.New(&program{}, c)
}

func unitPath(o Options, home string) string {
	if o.System {
		return "/etc/systemd/system/" + Name + ".service"
	}
	return filepath.Join(home, ".config", "systemd", "user", Name+".service")
}

// userUnitState asks the user's systemd manager about the unit.
func userUnitState() string {
	out, err := exec.Command("systemctl", "--user", "is-active", Name+".service").Output()
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

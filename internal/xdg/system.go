package xdg

// System mode (docs/service.md): the packages' system unit
// (packaging/systemd/devpi-credd-system.service) runs the daemon as its own
// user, with an environment that puts its directories where root keeps a
// service's: /etc/devpi-credd (config), /var/lib/devpi-credd (state: the
// root tokens, the approval record) and /run/devpi-credd (the owner's
// socket). The users it serves (allow_uids) connect to SystemSocket.
const (
	// SystemUser is the daemon's user (packaging/sysusers).
	SystemUser = "devpi-credd"
	// SystemSocket is the system daemon's shared socket, where clients
	// look when their own user's socket is not there. Its directory is
	// the unit's second runtime directory: the first, /run/devpi-credd,
	// stays private (config: shared_socket is in another directory).
	SystemSocket = "/run/devpi-credd-shared/socket"
)

// SystemGetenv is the system unit's environment (its Environment= line),
// as a getenv: StateDir, ConfigFile and Socket of it are the system
// daemon's.
func SystemGetenv(key string) string {
	switch key {
	case "XDG_CONFIG_HOME":
		return "/etc"
	case "XDG_STATE_HOME":
		return "/var/lib"
	case "XDG_RUNTIME_DIR":
		return "/run"
	}
	return ""
}

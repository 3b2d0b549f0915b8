// Package xdg finds devpi-credd's directories by the XDG base directory
// rules. It reads the environment through a getenv function at each call,
// so tests and the daemon see changes without package state.
package xdg

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// App is the directory name under each base.
const App = "devpi-credd"

func home(getenv func(string) string) string {
	if h := getenv("HOME"); h != "" {
		return h
	}
	if runtime.GOOS == "windows" {
		if h := getenv("USERPROFILE"); h != "" {
			return h
		}
	}
	h, _ := os.UserHomeDir()
	return h
}

func base(getenv func(string) string, env string, fallback ...string) string {
	if d := getenv(env); filepath.IsAbs(d) {
		return filepath.Join(d, App)
	}
	return filepath.Join(append([]string{home(getenv)}, append(fallback, App)...)...)
}

// StateDir holds sessions, stored tokens and the audit log:
// $XDG_STATE_HOME/devpi-credd, else ~/.local/state/devpi-credd. State, not
// config, because config directories end up in dotfile repositories.
func StateDir(getenv func(string) string) string {
	return base(getenv, "XDG_STATE_HOME", ".local", "state")
}

// ConfigDir holds config.toml: $XDG_CONFIG_HOME/devpi-credd, else
// ~/.config/devpi-credd.
func ConfigDir(getenv func(string) string) string {
	return base(getenv, "XDG_CONFIG_HOME", ".config")
}

// RuntimeDir holds the daemon's socket: $XDG_RUNTIME_DIR/devpi-credd; on
// Windows %LOCALAPPDATA%\devpi-credd. Where neither applies (containers,
// CI agents, macOS), a per-user directory under the temporary directory, as
// tmux does; whoever creates it must check that it is private and its own.
func RuntimeDir(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, App)
	}
	// On Windows, the user's profile, which only the user can open.
	if d := getenv("LOCALAPPDATA"); runtime.GOOS == "windows" && filepath.IsAbs(d) {
		return filepath.Join(d, App)
	}
	tmp := getenv("TMPDIR")
	if !filepath.IsAbs(tmp) {
		tmp = os.TempDir()
	}
	return filepath.Join(tmp, fmt.Sprintf("%s-%d", App, os.Getuid()))
}

// Socket is the daemon's socket path: $DEVPI_CREDD_SOCKET, else
// RuntimeDir/socket. Daemon and clients both ask here, so they agree.
func Socket(getenv func(string) string) string {
	if s := getenv("DEVPI_CREDD_SOCKET"); s != "" {
		return s
	}
	return filepath.Join(RuntimeDir(getenv), "socket")
}

// ConfigFile is $DEVPI_CREDD_CONFIG, else ConfigDir/config.toml.
func ConfigFile(getenv func(string) string) string {
	if s := getenv("DEVPI_CREDD_CONFIG"); s != "" {
		return s
	}
	return filepath.Join(ConfigDir(getenv), "config.toml")
}

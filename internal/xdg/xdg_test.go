package xdg

import (
	"path/filepath"
	"testing"
)

func TestDirs(t *testing.T) {
	env := map[string]string{"HOME": "/home/u"}
	get := func(k string) string { return env[k] }
	if got := StateDir(get); got != filepath.FromSlash("/home/u/.local/state/devpi-credd") {
		t.Errorf("StateDir = %s", got)
	}
	if got := ConfigDir(get); got != filepath.FromSlash("/home/u/.config/devpi-credd") {
		t.Errorf("ConfigDir = %s", got)
	}
	env["XDG_STATE_HOME"] = "/var/s"
	env["XDG_CONFIG_HOME"] = "relative/ignored" // the spec says relative paths are invalid
	if got := StateDir(get); got != filepath.FromSlash("/var/s/devpi-credd") {
		t.Errorf("StateDir with XDG = %s", got)
	}
	if got := ConfigDir(get); got != filepath.FromSlash("/home/u/.config/devpi-credd") {
		t.Errorf("ConfigDir with relative XDG = %s", got)
	}
}

func TestRuntime(t *testing.T) {
	env := map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"}
	get := func(k string) string { return env[k] }
	if got := Socket(get); got != filepath.FromSlash("/run/user/1000/devpi-credd/socket") {
		t.Errorf("Socket = %s", got)
	}
	env["DEVPI_CREDD_SOCKET"] = "/x/s"
	if got := Socket(get); got != "/x/s" {
		t.Errorf("Socket with override = %s", got)
	}
	delete(env, "XDG_RUNTIME_DIR")
	env["TMPDIR"] = "/tmpx"
	if got := RuntimeDir(get); filepath.Dir(got) != filepath.FromSlash("/tmpx") || filepath.Base(got)[:12] != "devpi-credd-" {
		t.Errorf("RuntimeDir without XDG = %s", got)
	}
	if got := ConfigFile(get); got != filepath.FromSlash("/home/u/.config/devpi-credd/config.toml") {
		t.Errorf("ConfigFile = %s", got)
	}
}

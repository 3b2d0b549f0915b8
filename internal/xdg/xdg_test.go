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

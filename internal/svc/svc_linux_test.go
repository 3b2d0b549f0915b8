package svc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeSystemctl puts a systemctl on PATH that logs its calls and exits
// with code (0: a user manager answers).
func fakeSystemctl(t *testing.T, code string) string {
	t.Helper()
	bin := t.TempDir()
	log := filepath.Join(bin, "calls")
	script := "#!/bin/sh\necho \"$*\" >> " + log + "\ncase \"$*\" in\n  *--version*) echo 'systemd 252'; exit 0;;\n  *is-active*) echo inactive; exit 3;;\nesac\nexit " + code + "\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	return log
}

func TestInstallUninstall(t *testing.T) {
	calls := fakeSystemctl(t, "0")
	home := t.TempDir()
	t.Setenv("HOME", home) // the library writes below $HOME
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	m, err := New(Options{Executable: "/opt/devpi credd/bin/devpi-credd", Config: "/home/u/conf dir/c%d.toml"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".config", "systemd", "user", "devpi-credd.service"); m.Unit() != want || m.Installed() {
		t.Fatalf("unit %s (installed %v), want %s", m.Unit(), m.Installed(), want)
	}
	if err := m.Install(); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(m.Unit())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"WantedBy=default.target", `"--config" "/home/u/conf dir/c%%d.toml"`, "UMask=0077",
		"Requires=devpi-credd.socket", "Also=devpi-credd.socket"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q:\n%s", want, unit)
		}
	}
	// Under umask 000, nothing on the way to the unit is writable by others.
	sock := filepath.Join(filepath.Dir(m.Unit()), "devpi-credd.socket")
	if b, err := os.ReadFile(sock); err != nil || !strings.Contains(string(b), "ListenStream=%t/devpi-credd/socket") {
		t.Errorf("the socket unit: %q, %v", b, err)
	}
	for p, want := range map[string]os.FileMode{m.Unit(): 0o644, sock: 0o644, filepath.Dir(m.Unit()): 0o755, filepath.Join(home, ".config"): 0o755} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, want %v", p, st.Mode(), want)
		}
	}
	if err := m.Install(); !errors.Is(err, ErrInstalled) {
		t.Errorf("installing twice: %v", err)
	}
	if s := m.State(); s != "not running (inactive)" {
		t.Errorf("State = %q", s)
	}
	if err := m.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if m.Installed() {
		t.Error("still installed")
	}
	if err := m.Uninstall(); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("uninstalling twice: %v", err)
	}
	if err := m.Control("start"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("start when not installed: %v", err)
	}
	b, _ := os.ReadFile(calls)
	for _, want := range []string{"enable --user devpi-credd.service", "--user enable devpi-credd.socket", "--user disable --now devpi-credd.socket"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("systemctl calls lack %q: %s", want, b)
		}
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket unit is left: %v", err)
	}
}

// Without a user manager the unit is written all the same, and the error
// says the manager cannot be reached.
func TestInstallWithoutUserManager(t *testing.T) {
	fakeSystemctl(t, "1")
	t.Setenv("HOME", t.TempDir())
	m, err := New(Options{Executable: "/usr/bin/devpi-credd", Config: "/c.toml"})
	if err != nil {
		t.Fatal(err)
	}
	var ue *UnreachableError
	if err := m.Install(); !errors.As(err, &ue) || !m.Installed() {
		t.Fatalf("Install = %v, installed %v", err, m.Installed())
	}
	if err := m.Uninstall(); !errors.As(err, &ue) || m.Installed() {
		t.Fatalf("Uninstall = %v, installed %v", err, m.Installed())
	}
}

// The .deb's and .rpm's user unit (packaging/systemd) is the one service
// install writes, but for the lines a package sets its own way (its
// description, documentation and /usr/bin path): a change to one reaches
// the other.
func TestPackagedUnitIsTheInstalledOne(t *testing.T) {
	packaged, err := os.ReadFile(filepath.Join("..", "..", "packaging", "systemd", Name+".service"))
	if err != nil {
		t.Fatal(err)
	}
	settings := func(text string) []string {
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "Description=") || strings.HasPrefix(l, "Documentation=") || strings.HasPrefix(l, "ExecStart=") {
				continue
			}
			out = append(out, l)
		}
		return out
	}
	got, want := settings(string(packaged)), settings(unitTemplate(false))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("packaging/systemd/%s.service differs from the unit service install writes:\n%s\n--- want\n%s", Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(string(packaged), "ExecStart=/usr/bin/devpi-credd serve\n") {
		t.Error("the packaged unit does not start /usr/bin/devpi-credd serve")
	}
}

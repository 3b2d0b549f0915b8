package sysmode

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

const (
	unitFile     = "../../packaging/systemd/devpi-credd-system.service"
	sysusersFile = "../../packaging/sysusers/devpi-credd.conf"
)

// unitSettings reads the [Service] section of the system unit: each key's
// values, in order.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]" && line != "" && !strings.HasPrefix(line, "#"):
			k, v, _ := strings.Cut(line, "=")
			settings[k] = append(settings[k], v)
		}
	}
	return settings
}

// The unit runs the daemon where Setup puts its files, as the user the
// sysusers entry makes: the environment is xdg.SystemGetenv's, the state
// directory StateDir, the runtime directories those of both sockets.
func TestUnitAgreesWithTheLayout(t *testing.T) {
	s := unitSettings(t)
	one := func(k string) string {
		if len(s[k]) != 1 {
			t.Errorf("%s= is set %d times", k, len(s[k]))
			return ""
		}
		return s[k][0]
	}
	if one("User") != xdg.SystemUser || one("Group") != xdg.SystemUser {
		t.Errorf("User=%s Group=%s, want %s", one("User"), one("Group"), xdg.SystemUser)
	}
	if got := one("ExecStart"); got != "/usr/bin/devpi-credd serve" {
		t.Errorf("ExecStart=%s: the config is the environment's, found as the daemon finds it", got)
	}
	env := map[string]string{}
	for _, kv := range strings.Fields(one("Environment")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, k := range []string{"XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "HOME", "DEVPI_CREDD_SOCKET", "DEVPI_CREDD_CONFIG"} {
		if env[k] != xdg.SystemGetenv(k) {
			t.Errorf("Environment= has %s=%q, xdg.SystemGetenv %q", k, env[k], xdg.SystemGetenv(k))
		}
	}
	if got := filepath.Join("/var/lib", one("StateDirectory")); got != StateDir() || one("StateDirectoryMode") != "0700" {
		t.Errorf("StateDirectory= %s mode %s, want %s 0700", got, one("StateDirectoryMode"), StateDir())
	}
	runtime := strings.Fields(one("RuntimeDirectory"))
	for _, socket := range []string{xdg.Socket(xdg.SystemGetenv), xdg.SystemSocket} {
		dir := filepath.Dir(socket)
		if filepath.Dir(dir) != "/run" || !slices.Contains(runtime, filepath.Base(dir)) {
			t.Errorf("RuntimeDirectory=%v does not make %s's directory", runtime, socket)
		}
	}
	// 0700 for both: serve opens the shared one to 0711 itself, and
	// refuses to serve in a directory that is not its user's.
	if one("RuntimeDirectoryMode") != "0700" || one("UMask") != "0077" || one("LimitCORE") != "0" || one("NoNewPrivileges") != "yes" {
		t.Errorf("RuntimeDirectoryMode=%s UMask=%s LimitCORE=%s NoNewPrivileges=%s", one("RuntimeDirectoryMode"), one("UMask"), one("LimitCORE"), one("NoNewPrivileges"))
	}
	// harden.Memory locks the daemon's memory only where the limit
	// cannot bite later.
	if one("LimitMEMLOCK") != "infinity" {
		t.Errorf("LimitMEMLOCK=%s, want infinity", one("LimitMEMLOCK"))
	}
	// What would break the peer check or the daemon's listening.
	for _, k := range []string{"PrivateUsers", "ProcSubset", "DynamicUser", "PrivateNetwork"} {
		if len(s[k]) != 0 {
			t.Errorf("%s= is set: %v", k, s[k])
		}
	}
}

// The sysusers entry makes that user, with the state directory as home
// and no login shell (in a root of the test's: no user is made here).
func TestSysusersEntry(t *testing.T) {
	b, err := os.ReadFile(sysusersFile)
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			entries = append(entries, line)
		}
	}
	want := `u ` + xdg.SystemUser + ` - "devpi-credd token daemon" ` + StateDir()
	if len(entries) != 1 || entries[0] != want {
		t.Fatalf("entries %q, want %q", entries, want)
	}
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("no systemd-sysusers here")
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(sysusersFile)
	if out, err := exec.Command("systemd-sysusers", "--root", root, abs).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	f := strings.Split(strings.TrimSpace(string(passwd)), ":")
	if len(f) != 7 || f[0] != xdg.SystemUser || f[5] != StateDir() || !strings.HasSuffix(f[6], "/nologin") {
		t.Errorf("passwd: %q", passwd)
	}
}

// systemd-analyze has nothing to say of the unit (it exits 0 for a key
// it does not know, or a value it cannot read: its silence is the test),
// with the binary at a path that exists here.
func TestUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze here")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), filepath.Base(unitFile))
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/bin/devpi-credd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

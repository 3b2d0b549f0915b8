//go:build dist

package disttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// systemUser is the devpi-credd user's passwd entry, split, if there is one.
func systemUser(t *testing.T) ([]string, bool) {
	t.Helper()
	out, err := exec.Command("getent", "passwd", "devpi-credd").Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 { // getent: not found
		return nil, false
	}
	if err != nil {
		t.Fatalf("getent passwd devpi-credd: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), ":"), true
}

// removeSystemUser undoes what the package's postinst did, when the test
// made the user.
func removeSystemUser(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("userdel", "devpi-credd").CombinedOutput(); err != nil {
		t.Errorf("userdel devpi-credd: %v\n%s", err, out)
	}
	_ = exec.Command("groupdel", "devpi-credd").Run() // userdel removes it where USERGROUPS_ENAB says so
}

// checkSystemUser: the user as packaging/sysusers describes it, a system
// account with a group of its own, no login shell, and its state
// directory as home.
func checkSystemUser(t *testing.T, after string) {
	t.Helper()
	f, ok := systemUser(t)
	if !ok {
		t.Fatalf("after %s there is no devpi-credd user", after)
	}
	uid, _ := strconv.Atoi(f[2])
	if len(f) != 7 || uid <= 0 || uid >= 1000 || f[4] != "devpi-credd token daemon" || f[5] != "/var/lib/devpi-credd" || !strings.HasSuffix(f[6], "/nologin") {
		t.Errorf("after %s the devpi-credd user is %q; want a system uid, a comment, /var/lib/devpi-credd and nologin", after, f)
	}
	out, err := exec.Command("getent", "group", "devpi-credd").Output()
	if g := strings.Split(strings.TrimSpace(string(out)), ":"); err != nil || len(g) < 3 || g[2] != f[3] {
		t.Errorf("after %s the devpi-credd group is %q (%v); want the user's gid %s", after, out, err, f[3])
	}
}

// systemModeSmoke: system mode as docs/service.md sets it up, with the
// installed package. setup-system writes into a tree of the test's own
// (--root); the daemon runs as devpi-credd with the system unit's
// environment pointing there (setpriv: no systemd here), in the runtime
// directories the unit has systemd make. The user it serves (nobody) finds
// it with no config and no variable; the owner's socket is out of its
// reach; another uid is refused.
func systemModeSmoke(t *testing.T) {
	for _, d := range []string{"/run/devpi-credd", "/run/devpi-credd-shared"} {
		if _, err := os.Lstat(d); err == nil {
			t.Skipf("%s is there: a system daemon runs on this machine; not touching it", d)
		}
	}
	f, _ := systemUser(t)
	uid, _ := strconv.Atoi(f[2])
	gid, _ := strconv.Atoi(f[3])
	root := t.TempDir()
	// The daemon's user reads its config under root.
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var res struct {
		Files []struct{ Path, Action string }
		Next  []string
	}
	out := run(t, nil, "/usr/bin/devpi-credd", "setup-system", "--root", root, "--user", "nobody", "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Files) != 4 {
		t.Fatalf("setup-system --json: %v\n%s", err, out)
	}
	if out := run(t, nil, "/usr/bin/devpi-credd", "setup-system", "--root", root, "--user", "nobody"); !strings.HasPrefix(out, "nothing to change") {
		t.Errorf("setup-system again:\n%s", out)
	}
	for _, d := range []string{"/run/devpi-credd", "/run/devpi-credd-shared"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	daemon := exec.Command("setpriv", "--reuid", f[2], "--regid", f[3], "--clear-groups", "--", "/usr/bin/devpi-credd", "serve")
	daemon.Env = []string{"PATH=/usr/bin:/bin", "XDG_CONFIG_HOME=" + filepath.Join(root, "etc"),
		"XDG_STATE_HOME=" + filepath.Join(root, "var", "lib"), "XDG_RUNTIME_DIR=/run"}
	var log bytes.Buffer
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Wait() }()
	t.Cleanup(func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = daemon.Process.Kill()
			<-done
		}
	})
	shared := "/run/devpi-credd-shared/socket"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(shared); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the daemon ended: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s:\n%s", shared, log.String())
		}
	}
	for path, want := range map[string]fs.FileMode{"/run/devpi-credd": fs.ModeDir | 0o700, "/run/devpi-credd-shared": fs.ModeDir | 0o711,
		"/run/devpi-credd/socket": fs.ModeSocket | 0o600, shared: fs.ModeSocket | 0o666} {
		st, err := os.Lstat(path)
		if err != nil || st.Mode() != want || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
			t.Errorf("%s: %v, %v; want %v, the daemon user's", path, st.Mode(), err, want)
		}
	}
	as := func(uid string, env ...string) (string, error) {
		cmd := exec.Command("setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--", "/usr/bin/devpi-credd", "status", "--json")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The daemon has read setup-system's approval record: uploads need a
	// code, and nobody has enrolled yet.
	out, err := as("65534")
	var st struct {
		SharedSocket string `json:"shared_socket"`
		Approval     struct {
			Enrolled, Uploads bool
			Store             string
		}
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.SharedSocket != shared ||
		st.Approval.Enrolled || !st.Approval.Uploads || st.Approval.Store != filepath.Join(root, "var/lib/devpi-credd/approval.json") {
		t.Errorf("status as nobody, with no config: %v %+v\n%s\n%s", err, st, out, log.String())
	}
	// Trusting the daemon's uid does not help: the directory is closed.
	if out, err := as("65534", "DEVPI_CREDD_SOCKET=/run/devpi-credd/socket", "DEVPI_CREDD_DAEMON_UID="+f[2]); err == nil || !strings.Contains(out, "no permission to use the daemon's socket") {
		t.Errorf("status as nobody on the owner's socket: %v\n%s", err, out)
	}
	if out, err := as("4321"); err == nil || !strings.Contains(out, "uid 4321 may not use this daemon") {
		t.Errorf("status as another uid: %v\n%s", err, out)
	}
}

//go:build e2e && linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// developer is a real uid made for one test (useradd, removed at the
// end), with its own HOME under a temporary directory: the person at the
// terminal and the worm both run as it, through setpriv, as a login of
// that user would.
type developer struct {
	name     string
	uid, gid int
	home     string
	// u is the devpi user the developer works as; its home is the
	// developer's.
	u *user
	// linkDir holds the 'keyring' link (keyring-link).
	linkDir string
	// extraEnv is added to every program's environment (the system
	// socket, in system mode).
	extraEnv []string
}

// newDeveloper adds a user to the system and a devpi user for it.
func newDeveloper(t *testing.T) *developer {
	t.Helper()
	needRoot(t)
	base := t.TempDir()
	letOthersRun(t, filepath.Dir(base), base)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	d := &developer{name: "credd-dev-" + hex.EncodeToString(suffix), home: filepath.Join(base, "home")}
	if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", d.home, "--shell", "/bin/bash", "--user-group", d.name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", d.name, err, out)
	}
	t.Cleanup(func() { d.remove(t) })
	acct, err := osuser.Lookup(d.name)
	must(t, err)
	d.uid, _ = strconv.Atoi(acct.Uid)
	d.gid, _ = strconv.Atoi(acct.Gid)
	must(t, os.Mkdir(d.home, 0o700))
	must(t, os.Chown(d.home, d.uid, d.gid))
	d.linkDir = filepath.Join(d.home, "bin")
	d.mkdir(t, d.linkDir)
	d.mkdir(t, d.runtimeDir())
	d.u = newUser(t)
	d.u.home = d.home
	reachPython(t)
	return d
}

// pythonReach lets other uids enter the directories on the way to the
// venvs' interpreter that they may not (pyenv's under /root, 0700): the
// developer runs the pinned tools too. Shared by the tests running at
// once, undone when the last one ends.
var pythonReach struct {
	sync.Mutex
	users   int
	changed map[string]os.FileMode
}

func reachPython(t *testing.T) {
	t.Helper()
	pythonReach.Lock()
	defer pythonReach.Unlock()
	if pythonReach.users == 0 {
		pythonReach.changed = map[string]os.FileMode{}
		python, err := filepath.EvalSymlinks(bed.py("client", "python"))
		must(t, err)
		for dir := filepath.Dir(python); dir != "/"; dir = filepath.Dir(dir) {
			st, err := os.Stat(dir)
			must(t, err)
			if st.Mode().Perm()&0o001 == 0 {
				pythonReach.changed[dir] = st.Mode()
				must(t, os.Chmod(dir, st.Mode()|0o001))
				t.Logf("%s may be entered by other uids (o+x) until the test ends: the venvs' Python is under it", dir)
			}
		}
	}
	pythonReach.users++
	t.Cleanup(func() {
		pythonReach.Lock()
		defer pythonReach.Unlock()
		if pythonReach.users--; pythonReach.users == 0 {
			for dir, mode := range pythonReach.changed {
				if err := os.Chmod(dir, mode); err != nil {
					t.Errorf("restoring %s's mode: %v", dir, err)
				}
			}
		}
	})
}

// remove stops every process left of the developer's uid (all started
// by this test: the uid is the test's), then removes the user.
func (d *developer) remove(t *testing.T) {
	for range 50 {
		pids := d.processes()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("userdel", d.name).CombinedOutput(); err != nil {
		t.Errorf("userdel %s: %v: %s", d.name, err, out)
	}
	// userdel removes the user's own group; a group left by a failed
	// useradd is the test's too.
	if _, err := osuser.LookupGroup(d.name); err == nil {
		_ = exec.Command("groupdel", d.name).Run()
	}
}

// processes lists the pids running as the developer's uid.
func (d *developer) processes() []int {
	var out []int
	for _, pid := range procPIDs() {
		if uid, ok := procUID(pid); ok && uid == d.uid {
			out = append(out, pid)
		}
	}
	return out
}

// procPIDs lists /proc's processes.
func procPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// procUID is pid's real uid, from /proc/PID/status.
func procUID(pid int) (int, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				uid, err := strconv.Atoi(f[0])
				return uid, err == nil
			}
		}
	}
	return 0, false
}

// mkdir makes a private directory of the developer's, and its missing
// parents.
func (d *developer) mkdir(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	d.mkdir(t, filepath.Dir(path))
	must(t, os.Mkdir(path, 0o700))
	must(t, os.Chown(path, d.uid, d.gid))
}

func (d *developer) runtimeDir() string { return filepath.Join(d.home, "run") }

func (d *developer) configPath() string {
	return filepath.Join(d.home, ".config", "devpi-credd", "config.toml")
}

func (d *developer) auditPath() string {
	return filepath.Join(d.home, ".local", "state", "devpi-credd", "audit.log")
}

// env is the environment of the developer's programs: their own HOME
// and runtime directory, the keyring link and devpi-credd on PATH, our
// keyring backend free to answer (no forced backend), no caches.
func (d *developer) env(extra ...string) []string {
	return d.u.env(append(append([]string{
		"USER=" + d.name, "LOGNAME=" + d.name,
		"PATH=" + d.linkDir + ":" + filepath.Dir(bed.bin) + ":/usr/local/bin:/usr/bin:/bin",
		"XDG_RUNTIME_DIR=" + d.runtimeDir(),
		"PYTHON_KEYRING_BACKEND=",
		"PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_CACHE_DIR=1", "UV_NO_CACHE=1", "UV_PYTHON_DOWNLOADS=never",
		"COLUMNS=1000", "NO_COLOR=1",
	}, d.extraEnv...), extra...)...)
}

// asDev is argv run as the developer through setpriv, with no other
// groups.
func (d *developer) asDev(prog string, args ...string) []string {
	return append([]string{"setpriv", "--reuid", strconv.Itoa(d.uid), "--regid", strconv.Itoa(d.gid), "--clear-groups", "--", prog}, args...)
}

// command is prog as the developer, in its HOME, in a session of its
// own (no terminal), killed if the test binary dies.
func (d *developer) command(ctx context.Context, env []string, prog string, args ...string) *exec.Cmd {
	argv := d.asDev(prog, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = d.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs prog as the developer with stdin, bounded in time.
func (d *developer) run(t *testing.T, extra []string, stdin string, prog string, args ...string) result {
	t.Helper()
	argv := d.asDev(prog, args...)
	return runCmd(t, func(cmd *exec.Cmd) {
		cmd.Env = d.env(extra...)
		cmd.Dir = d.home
		cmd.Stdin = strings.NewReader(stdin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}, argv[0], argv[1:]...)
}

// credd runs devpi-credd as the developer and wants exit code want.
func (d *developer) credd(t *testing.T, want int, stdin string, args ...string) result {
	t.Helper()
	return d.u.expect(t, want, d.run(t, nil, stdin, bed.bin, args...), "devpi-credd", args)
}

// wheel builds a wheel of project at version in the developer's HOME.
func (d *developer) wheel(t *testing.T, project, version string) string {
	t.Helper()
	r := d.run(t, nil, "", bed.py("client", "python"), bed.mkwheel, project, version, filepath.Join(d.home, "dist"))
	if r.code != 0 {
		t.Fatalf("mkwheel as the developer: %s", r)
	}
	return strings.TrimSpace(r.stdout)
}

// writeFile writes a file of the developer's.
func (d *developer) writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), mode))
	must(t, os.Chown(path, d.uid, d.gid))
}

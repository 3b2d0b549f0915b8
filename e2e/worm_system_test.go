//go:build e2e && linux

package e2e

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/devpi-credd/devpi-credd/localapi"
)

// System mode lives at fixed paths (the clients find the daemon's shared
// socket there), so one test at a time on a machine, and none where
// devpi-credd is set up for real.
const (
	systemSocket = "/run/devpi-credd-shared/socket"
	systemState  = "/var/lib/devpi-credd"
	systemConfig = "/etc/devpi-credd"
	systemUnit   = "../packaging/systemd/devpi-credd-system.service"
	sysusersConf = "../packaging/sysusers/devpi-credd.conf"
)

// lockSystemMode holds a lock for the test's life: system mode's paths
// are the machine's.
func lockSystemMode(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "devpi-credd-e2e-system.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	t.Cleanup(func() { f.Close() })
}

// systemDaemonUser makes the daemon's user from the packages' sysusers
// file, as their install does, unless it is there already; one made
// here is removed at the end.
func systemDaemonUser(t *testing.T) string {
	t.Helper()
	data := readFile(t, sysusersConf)
	var name string
	for l := range strings.SplitSeq(data, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "u" {
			name = f[1]
		}
	}
	if name == "" {
		t.Fatalf("%s names no user", sysusersConf)
	}
	if _, err := osuser.Lookup(name); err == nil {
		return name
	}
	conf, err := filepath.Abs(sysusersConf) // systemd-sysusers takes a relative path as a name in its own directories
	must(t, err)
	if out, err := exec.Command("systemd-sysusers", conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers %s: %v: %s", sysusersConf, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
		if _, err := osuser.LookupGroup(name); err == nil {
			_ = exec.Command("groupdel", name).Run()
		}
	})
	if _, err := osuser.Lookup(name); err != nil {
		t.Fatalf("systemd-sysusers made no user %s: %v", name, err)
	}
	return name
}

// unit is what the test takes from the system unit to run the daemon as
// systemd would: there is no systemd here.
type unit struct {
	user, group  string
	env          []string
	execStart    []string
	umask        string
	memlock      string
	runtimeDirs  []string
	runtimeMode  string
	stateDirs    []string
	stateMode    string
	noNewPrivs   bool
	limitCoreOff bool
}

func readUnit(t *testing.T, path string) *unit {
	t.Helper()
	u := &unit{umask: "0022", runtimeMode: "0755", stateMode: "0755"}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		switch key {
		case "User":
			u.user = value
		case "Group":
			u.group = value
		case "Environment":
			u.env = append(u.env, strings.Fields(value)...)
		case "ExecStart":
			u.execStart = strings.Fields(value)
		case "UMask":
			u.umask = value
		case "LimitMEMLOCK":
			u.memlock = value
		case "LimitCORE":
			u.limitCoreOff = value == "0"
		case "RuntimeDirectory":
			u.runtimeDirs = strings.Fields(value)
		case "RuntimeDirectoryMode":
			u.runtimeMode = value
		case "StateDirectory":
			u.stateDirs = strings.Fields(value)
		case "StateDirectoryMode":
			u.stateMode = value
		case "NoNewPrivileges":
			u.noNewPrivs = value == "yes"
		}
	}
	if u.user == "" || len(u.execStart) == 0 {
		t.Fatalf("%s: no User= or ExecStart=", path)
	}
	if u.group == "" {
		u.group = u.user
	}
	return u
}

// bytesOf reads a systemd size such as 8M (base 1024), or infinity, for
// prlimit.
func bytesOf(t *testing.T, v string) string {
	t.Helper()
	if v == "infinity" {
		return "unlimited"
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, strings.TrimSuffix(v, "K")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	must(t, err)
	return strconv.FormatInt(n*mult, 10)
}

// dirs makes the unit's runtime and state directories, the daemon's
// user's, as systemd does before the start.
func (u *unit) dirs(t *testing.T) {
	t.Helper()
	acct, err := osuser.Lookup(u.user)
	must(t, err)
	uid, _ := strconv.Atoi(acct.Uid)
	grp, err := osuser.LookupGroup(u.group)
	must(t, err)
	gid, _ := strconv.Atoi(grp.Gid)
	mk := func(base string, names []string, mode string) {
		m, err := strconv.ParseUint(mode, 8, 32)
		must(t, err)
		for _, n := range names {
			p := filepath.Join(base, n)
			must(t, os.MkdirAll(p, 0o700))
			must(t, os.Chmod(p, os.FileMode(m)))
			must(t, os.Chown(p, uid, gid))
		}
	}
	mk("/run", u.runtimeDirs, u.runtimeMode)
	mk("/var/lib", u.stateDirs, u.stateMode)
}

// command is the unit's ExecStart with bin for the program: the limits
// set as root (prlimit), then the unit's user, groups and environment
// (setpriv, env -i), its umask (sh), as systemd runs it.
func (u *unit) command(t *testing.T, bin string) *exec.Cmd {
	t.Helper()
	argv := []string{"prlimit"}
	if u.limitCoreOff {
		argv = append(argv, "--core=0")
	}
	if u.memlock != "" {
		n := bytesOf(t, u.memlock)
		// Raising the hard limit takes CAP_SYS_RESOURCE, which a
		// container's root may lack: then the most there is.
		var lim syscall.Rlimit
		must(t, syscall.Getrlimit(unix.RLIMIT_MEMLOCK, &lim))
		if want, err := strconv.ParseUint(n, 10, 64); (err != nil || want > lim.Max) && lim.Max != unix.RLIM_INFINITY {
			t.Logf("LimitMEMLOCK=%s is more than this machine's hard limit, %d: the daemon gets that", u.memlock, lim.Max)
			n = strconv.FormatUint(lim.Max, 10)
		}
		argv = append(argv, "--memlock="+n+":"+n)
	}
	argv = append(argv, "setpriv", "--reuid", u.user, "--regid", u.group, "--init-groups")
	if u.noNewPrivs {
		argv = append(argv, "--no-new-privs")
	}
	acct, err := osuser.Lookup(u.user)
	must(t, err)
	env := append([]string{"HOME=" + acct.HomeDir, "USER=" + u.user, "LOGNAME=" + u.user, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}, u.env...)
	argv = append(append(append(argv, "--", "env", "-i"), env...), "sh", "-c", `umask "$0" && exec "$@"`, u.umask, bin)
	argv = append(argv, u.execStart[1:]...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = serverProcAttr()
	return cmd
}

// newSystemBed: root sets up system mode with setup-system for the
// developer, with a long-lived token that then lives only in the
// daemon's state directory, and starts the daemon as its own user.
func newSystemBed(t *testing.T) *approvalBed {
	lockSystemMode(t)
	for _, p := range []string{systemConfig, systemState, filepath.Dir(systemSocket), "/run/devpi-credd"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s exists: devpi-credd's system mode is set up on this machine, which the test would change (%v)", p, err)
		}
		t.Cleanup(func() { os.RemoveAll(p) })
	}
	u := readUnit(t, systemUnit)
	if name := systemDaemonUser(t); name != u.user {
		t.Fatalf("the sysusers file makes %s, the unit runs as %s", name, u.user)
	}
	d := newDeveloper(t)
	b := newApprovalBed(t, d, false)
	b.socket = systemSocket
	b.auditPath = filepath.Join(systemState, "audit.log")
	b.roots = []string{systemConfig, systemState, "/run/devpi-credd", filepath.Dir(systemSocket)}

	// The long-lived token, made by root for the devpi user.
	admin := &user{name: d.u.name, password: d.u.password, home: t.TempDir()}
	admin.login(t)
	tokenFile := filepath.Join(admin.home, "root.token")
	oneTokenCreate(func() { admin.credd(t, 0, "token", "create", "-o", tokenFile) })
	b.root = parseToken(t, readFile(t, tokenFile))
	admin.credd(t, 0, "setup-system", "--user", d.name, "--url", bed.locked, "--token-file", tokenFile)
	must(t, os.Remove(tokenFile))
	admin.credd(t, 0, "logout")

	u.dirs(t)
	b.daemon = startProc(t, u.command(t, bed.bin), "/run/devpi-credd/socket")
	b.daemonPID = b.daemon.cmd.Process.Pid
	st := b.waitStatus(t, "the system daemon answers the developer", func(st *localapi.Status) bool { return len(st.Servers) == 1 && st.Servers[0].TokenID != "" })
	b.server = st.Servers[0].Name
	if a := st.Approval; a == nil || !a.Uploads || a.Enrolled {
		t.Errorf("after setup-system: approval %+v, want uploads needing a code and no authenticator yet", a)
	}
	d.credd(t, 0, "", "keyring-link", d.linkDir)
	b.person.term = newTerminal(t, d)
	return b
}

// TestPersonAndWormSystem: system mode, the daemon under its own uid.
func TestPersonAndWormSystem(t *testing.T) {
	needRoot(t)
	t.Parallel()
	newSystemBed(t).run(t)
}

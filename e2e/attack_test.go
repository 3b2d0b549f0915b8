//go:build e2e && linux

package e2e

// The attack review of issue 8, replayed with real uids, a real full disk
// and the real binaries: each test failed before its fix.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/localapi"
)

const (
	nobody = 65534 // the attacker, or the allowed other user
	victim = 4343  // a user with no passwd entry: all a uid needs here
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("another uid, a tmpfs: these need root; CI runs as root")
	}
}

// letOthersRun lets other uids reach and run the binaries the bed built.
func letOthersRun(t *testing.T, dirs ...string) {
	t.Helper()
	for _, p := range append([]string{bed.dir, filepath.Dir(bed.bin)}, dirs...) {
		must(t, os.Chmod(p, 0o711))
	}
}

// runAs runs prog as uid (with that gid and no other groups), with env
// only, and returns what it printed.
func runAs(t *testing.T, uid int, env []string, prog string, args ...string) result {
	t.Helper()
	return runCmd(t, func(cmd *exec.Cmd) {
		cmd.Env = env
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}, prog, args...)
}

// startAs starts prog as uid in the background; it is killed at the end
// of the test. Its output is collected in the returned buffer.
// startAs starts prog as uid; done is closed once it has exited and all
// its output is in out (the copy from its pipes ends after the exit).
func startAs(t *testing.T, uid int, prog string, args ...string) (out *lockedBuffer, done <-chan struct{}) {
	t.Helper()
	out = &lockedBuffer{}
	cmd := exec.Command(prog, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}, Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return out, exited
}

func mkdirMode(t *testing.T, path string, mode os.FileMode, uid int) string {
	t.Helper()
	must(t, os.Mkdir(path, 0o700))
	must(t, os.Chmod(path, mode))
	must(t, os.Chown(path, uid, uid))
	return path
}

// oneLine fails unless s is exactly one line.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	if strings.Count(strings.TrimRight(s, "\n"), "\n") != 0 || strings.TrimSpace(s) == "" {
		t.Errorf("%s: want one line, got %q", what, s)
	}
}

// Item 1: with XDG_RUNTIME_DIR unset, clients look in $TMPDIR/devpi-credd-UID.
// Another user takes that name first, as a link to a root-owned sticky
// directory (as /dev/shm is) where it listens itself. The victim's clients
// must refuse it without sending a byte; a socket that passes the directory
// checks is refused by the kernel's word on who listens.
func TestSquattedSocketDirectory(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	letOthersRun(t, filepath.Dir(base), base)
	tmp := mkdirMode(t, filepath.Join(base, "tmp"), os.ModeSticky|0o777, 0) // as /tmp
	shm := mkdirMode(t, filepath.Join(base, "shm"), os.ModeSticky|0o777, 0) // as /dev/shm
	home := mkdirMode(t, filepath.Join(base, "home"), 0o700, victim)
	logPath := filepath.Join(shm, "asked.log")

	squat := filepath.Join(tmp, fmt.Sprintf("devpi-credd-%d", victim))
	if r := runAs(t, nobody, nil, "/bin/ln", "-s", shm, squat); r.code != 0 {
		t.Fatalf("the attacker could not squat: %s", r)
	}
	startAs(t, nobody, bed.attacker, "serve", filepath.Join(shm, "socket"), logPath)
	waitUntil(t, 30*time.Second, "the attacker's socket", func() bool {
		st, err := os.Stat(filepath.Join(squat, "socket"))
		return err == nil && st.Mode()&os.ModeSocket != 0
	})
	env := []string{"HOME=" + home, "TMPDIR=" + tmp, "PATH=/usr/bin:/bin"}
	asked := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	for _, args := range [][]string{
		{"get", "http://unrelated.example/simple/"},
		{"keyring", "get", "http://unrelated.example/simple/", "bob"},
		{"keyring", "--mode=creds", "--output=json", "get", "http://unrelated.example/simple/"},
		{"status"},
	} {
		r := runAs(t, victim, env, bed.bin, args...)
		if r.code == 0 || strings.Contains(r.stdout, "STOLEN") || !strings.Contains(r.stderr, "is a symbolic link") {
			t.Errorf("%v through a squatted directory: %s", args, r)
		}
		oneLine(t, fmt.Sprint(args), r.stderr)
	}
	if a := asked(); a != "" {
		t.Errorf("the attacker learned what the victim asked for:\n%s", a)
	}

	// Past the directory checks: root moved the attacker's listening socket
	// into the victim's own private directory. The kernel says who listens.
	private := mkdirMode(t, filepath.Join(home, "run"), 0o700, victim)
	sock := filepath.Join(private, "socket")
	must(t, os.Rename(filepath.Join(shm, "socket"), sock))
	r := runAs(t, victim, append(env, "DEVPI_CREDD_SOCKET="+sock), bed.bin, "get", "http://unrelated.example/simple/")
	if r.code == 0 || strings.Contains(r.stdout, "STOLEN") || !strings.Contains(r.stderr, fmt.Sprintf("it runs as uid %d, not as you (uid %d)", nobody, victim)) {
		t.Errorf("a daemon of another uid was used: %s", r)
	}
	if a := asked(); a != "" {
		t.Errorf("the attacker learned what the victim asked for:\n%s", a)
	}
	// Told to trust that uid, the client talks to it: the attacker above
	// was real, and the checks were what kept it out.
	r = runAs(t, victim, append(env, "DEVPI_CREDD_SOCKET="+sock, fmt.Sprintf("DEVPI_CREDD_DAEMON_UID=%d", nobody)), bed.bin, "get", "http://unrelated.example/simple/")
	if r.code != 0 || !strings.Contains(r.stdout, "STOLEN") || !strings.Contains(asked(), "unrelated.example") {
		t.Errorf("with DEVPI_CREDD_DAEMON_UID the attacker's daemon should answer: %s", r)
	}
}

// setConfigHead puts head at the top of u's config.
func (u *user) setConfigHead(t *testing.T, head string) {
	t.Helper()
	config := filepath.Join(u.home, ".config", "devpi-credd", "config.toml")
	text := readFile(t, config)
	must(t, os.WriteFile(config, []byte(head+"\n"+text), 0o600))
}

// allow lets uid in through a shared socket in u's HOME, which other uids
// can reach; it returns that socket.
func (u *user) allow(t *testing.T, uid int) string {
	t.Helper()
	shared := filepath.Join(u.home, "shared", "socket")
	u.setConfigHead(t, fmt.Sprintf("allow_uids = [%d]\nshared_socket = %q", uid, shared))
	must(t, os.MkdirAll(u.runtimeDir(), 0o700))
	letOthersRun(t, filepath.Dir(u.home), u.home)
	return shared
}

// asOther runs devpi-credd as uid 65534 against the daemon on socket.
func asOther(t *testing.T, socket string, args ...string) result {
	t.Helper()
	home := t.TempDir()
	must(t, os.Chown(home, nobody, nobody))
	return runAs(t, nobody, []string{"HOME=" + home, "PATH=/usr/bin:/bin", "DEVPI_CREDD_SOCKET=" + socket}, bed.bin, args...)
}

// Item 2: an allowed uid gets scoped tokens, but neither a session token
// (everything the root token can do) nor the owner's unlock.
func TestAllowedUIDGetsScopedTokensOnly(t *testing.T) {
	needRoot(t)
	u, _ := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	shared := u.allow(t, nobody)
	d := u.serve(t)

	if r := asOther(t, shared, "get", bed.url+dev+"/"); r.code != 0 || !strings.HasPrefix(r.stdout, "devpi-") {
		t.Fatalf("an allowed uid's scoped token: %s", r)
	}
	r := asOther(t, shared, "devpi-login")
	if r.code == 0 || !strings.Contains(r.stderr, "may get scoped tokens only") {
		t.Errorf("an allowed uid got a session token: %s", r)
	}
	oneLine(t, "devpi-login", r.stderr)
	u.credd(t, 0, "lock", "--socket", d.socket)
	if r := asOther(t, shared, "unlock"); r.code == 0 || !strings.Contains(r.stderr, "may get scoped tokens only") {
		t.Errorf("an allowed uid unlocked the owner's lock: %s", r)
	}
	if r := u.get(t, 1, bed.url+dev+"/"); !strings.Contains(r.stderr, "locked") {
		t.Errorf("after the other uid's unlock attempt: %s", r)
	}
}

// Item 3: another uid floods the shared socket (allow_uids is set, so it
// is 0666) with held connections, connect-and-close loops and refused
// requests. The owner, on its own socket, keeps being served; connections
// over the cap are dropped, and the refusals cost a few audit lines and a
// summary, not a line each.
func TestFloodFromAnotherUID(t *testing.T) {
	needRoot(t)
	u, _ := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	shared := u.allow(t, 4242)
	d := u.serve(t)

	out, done := startAs(t, nobody, bed.attacker, "flood", shared, "4s")
	// The owner is served during the flood.
	for i := 0; i < 20; i++ {
		u.get(t, 0, bed.url+dev+"/")
	}
	// Waiting for cmd.Wait, not the process: its last line may still be
	// in the pipe when it has exited.
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the flood did not end")
	}
	m := regexp.MustCompile(`refused=(\d+)`).FindStringSubmatch(out.String())
	var attackRefused int64
	if m == nil {
		t.Fatalf("flood output: %q", out)
	}
	fmt.Sscan(m[1], &attackRefused)
	if attackRefused < 100 {
		t.Fatalf("the flood hardly reached the daemon (%s): the test proves nothing", out)
	}
	var st localapi.Status
	must(t, json.Unmarshal([]byte(u.credd(t, 0, "status", "--json", "--socket", d.socket).stdout), &st))
	if st.Dropped == 0 || st.Refused < attackRefused {
		t.Errorf("status after the flood: dropped %d, refused %d (the attacker saw %d refusals)", st.Dropped, st.Refused, attackRefused)
	}
	d.stop(t) // writes the last summary
	audit := filepath.Join(u.home, ".local", "state", "devpi-credd", "audit.log")
	lines, summed := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, audit)), "\n") {
		var e struct {
			Event string `json:"event"`
			Peer  struct {
				UID int `json:"uid"`
			} `json:"peer"`
			Count int `json:"count"`
		}
		must(t, json.Unmarshal([]byte(l), &e))
		if e.Peer.UID != nobody {
			continue
		}
		switch e.Event {
		case "refuse":
			lines++
		case "refuse_summary":
			summed += e.Count
		}
	}
	// A burst of 20, then one a second for the 4 s (and a little more).
	if lines > 40 || int64(lines+summed) != st.Refused {
		t.Errorf("%d refusal lines and %d summed up for %d refusals", lines, summed, st.Refused)
	}
	if st, _ := os.Stat(audit); st.Size() > 64<<10 {
		t.Errorf("the audit log grew to %d bytes", st.Size())
	}
}

// tmpfs mounts a small tmpfs (a disk that fills up) for the test.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	must(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)))
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// Item 4: the audit log on a full disk: no token is handed out, get says
// why in one line, status shows it, and minting resumes by itself.
func TestAuditLogOnFullDisk(t *testing.T) {
	needRoot(t)
	u, _ := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	disk := tmpfs(t, 64<<10)
	u.setConfigHead(t, fmt.Sprintf("audit_log = %q", filepath.Join(disk, "audit.log")))
	d := u.serve(t)
	u.get(t, 0, bed.url+dev+"/")

	filler, err := os.Create(filepath.Join(disk, "filler"))
	must(t, err)
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	filler.Close()
	// The audit log's last page may take a few more lines.
	var r result
	for i := 0; ; i++ {
		r = u.runEnv(t, u.daemonEnv(), "", bed.bin, "get", bed.url+dev+"/")
		if r.code != 0 {
			break
		}
		if i > 100 {
			t.Fatal("tokens are still handed out with the audit log's disk full")
		}
	}
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no token handed out: it cannot be recorded in the audit log") || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("get on a full disk: %s", r)
	}
	oneLine(t, "get on a full disk", r.stderr)
	if s := u.credd(t, 0, "status", "--socket", d.socket).stdout; !strings.Contains(s, "audit log error") {
		t.Errorf("status does not show the audit error:\n%s", s)
	}
	must(t, os.Remove(filepath.Join(disk, "filler")))
	u.get(t, 0, bed.url+dev+"/")
	if s := u.credd(t, 0, "status", "--socket", d.socket).stdout; strings.Contains(s, "audit log error") {
		t.Errorf("status still shows an audit error:\n%s", s)
	}
}

// Item 5: a FIFO as token_file: the daemon starts, says why the token is
// unavailable, and stops on SIGTERM (stop checks).
func TestFIFOTokenFile(t *testing.T) {
	u, _ := setupDaemonUser(t)
	fifo := filepath.Join(u.home, "fifo.token")
	must(t, syscall.Mkfifo(fifo, 0o600))
	config := filepath.Join(u.home, ".config", "devpi-credd", "config.toml")
	text := readFile(t, config)
	text = regexp.MustCompile(`(?m)^token_file = .*$`).ReplaceAllString(text, fmt.Sprintf("token_file = %q", fifo))
	if !strings.Contains(text, fifo) {
		text += fmt.Sprintf("token_file = %q\n", fifo)
	}
	must(t, os.WriteFile(config, []byte(text), 0o600))
	d := u.serve(t)
	r := u.get(t, 1, bed.url)
	if !strings.Contains(r.stderr, "not a regular file") {
		t.Errorf("get with a FIFO as token file: %s", r)
	}
	d.stop(t)
}

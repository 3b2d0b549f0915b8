package harden

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary is also the processes it tests, selected by helperEnv:
// a target that holds a secret (hardened or not) and waits, a probe that
// attacks the target as a process of the same uid would, and a locker
// that tries Lock under a small RLIMIT_MEMLOCK.
const (
	helperEnv   = "HARDEN_TEST_HELPER"
	secretEnv   = "HARDEN_TEST_SECRET"
	pidEnv      = "HARDEN_TEST_PID"
	addrEnv     = "HARDEN_TEST_ADDR"
	nobody      = 65534
	testTimeout = 30 * time.Second
)

// Helper modes.
const (
	modeTarget   = "target"
	modeHardened = "target-hardened"
	modeProbe    = "probe"
	modeLock     = "lock"
	modeMemory   = "memory"
)

// What a probe saw.
const (
	sawSecret = "read the secret"
	attached  = "attached"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(helperEnv); mode {
	case "":
		os.Exit(m.Run())
	case modeTarget, modeHardened:
		os.Exit(target(mode == modeHardened))
	case modeProbe:
		os.Exit(probe())
	case modeLock:
		os.Exit(locker())
	case modeMemory:
		os.Exit(memory())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		os.Exit(2)
	}
}

// ready is what a target says on its readiness pipe.
type ready struct {
	Addr   uintptr  // where the secret is in its memory
	Failed []string // what harden.Process said
}

// target copies the secret from its environment into memory, hardens
// itself or not, says so on fd 3 and waits for its standard input to end.
func target(hardened bool) int {
	secret := []byte(os.Getenv(secretEnv))
	// Where Yama restricts ptrace to descendants, let anyone try: the
	// one difference between the two targets is harden.Process.
	_ = unix.Prctl(unix.PR_SET_PTRACER, unix.PR_SET_PTRACER_ANY, 0, 0, 0)
	var r ready
	if hardened {
		r.Failed = Process()
	}
	r.Addr = uintptr(unsafe.Pointer(&secret[0]))
	w := os.NewFile(3, "ready")
	if err := json.NewEncoder(w).Encode(r); err != nil {
		return 1
	}
	_ = w.Close()
	_, _ = io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(secret)
	return 0
}

// probe reads the target's environ and memory and attaches to it, and
// says what happened to each on standard output, as JSON.
func probe() int {
	pid, _ := strconv.Atoi(os.Getenv(pidEnv))
	addr, _ := strconv.ParseUint(os.Getenv(addrEnv), 10, 64)
	secret := []byte(os.Getenv(secretEnv))
	proc := fmt.Sprintf("/proc/%d/", pid)
	saw := map[string]string{}

	if b, err := os.ReadFile(proc + "environ"); err != nil {
		saw["environ"] = errName(err)
	} else {
		saw["environ"] = found(b, secret)
	}

	if f, err := os.Open(proc + "mem"); err != nil {
		saw["mem"] = errName(err)
	} else {
		b := make([]byte, len(secret))
		if _, err := f.ReadAt(b, int64(addr)); err != nil {
			saw["mem"] = errName(err)
		} else {
			saw["mem"] = found(b, secret)
		}
		_ = f.Close()
	}

	// ptrace requests come from the thread that attached.
	runtime.LockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		saw["ptrace"] = errName(err)
	} else {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
		_ = unix.PtraceDetach(pid)
		saw["ptrace"] = attached
	}
	if err := json.NewEncoder(os.Stdout).Encode(saw); err != nil {
		return 1
	}
	return 0
}

func found(b, secret []byte) string {
	if strings.Contains(string(b), string(secret)) {
		return sawSecret
	}
	return "read, no secret"
}

func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// locker lowers its RLIMIT_MEMLOCK to a page and tries Lock within and
// beyond it.
func locker() int {
	page := os.Getpagesize()
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: uint64(page), Max: uint64(page)}); err != nil {
		fmt.Println("setrlimit:", err)
		return 1
	}
	mem, err := unix.Mmap(-1, 0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		fmt.Println("mmap:", err)
		return 1
	}
	res := map[string]string{"small": "ok", "big": "ok"}
	if err := Lock(mem[:page]); err != nil {
		res["small"] = err.Error()
	} else if err := Unlock(mem[:page]); err != nil {
		res["small"] = err.Error()
	}
	if err := Lock(mem); err != nil {
		res["big"] = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// nobodyBinary copies the test binary where uid 65534 may run it: go
// test's build directory is private to its user.
func nobodyBinary(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: the processes under test run as uid 65534 (SysProcAttr.Credential)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "harden.test")
	// Readable, or execve would make even the control undumpable.
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func nobodyCommand(ctx context.Context, bin, mode string, env ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = filepath.Dir(bin)
	// GORACE: a race-enabled child would wait a second at its exit.
	cmd.Env = append([]string{helperEnv + "=" + mode, "PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Stderr = os.Stderr
	return cmd
}

// startTarget starts a target as uid 65534 and waits for its word on the
// readiness pipe.
func startTarget(t *testing.T, ctx context.Context, bin, mode, secret string) (int, ready) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := nobodyCommand(ctx, bin, mode, secretEnv+"="+secret)
	cmd.ExtraFiles = []*os.File{w}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: %v", mode, err)
		}
	})
	if err := r.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	var rd ready
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%s never said it was ready: %v", mode, err)
	}
	if err := json.Unmarshal(line, &rd); err != nil {
		t.Fatalf("%s said %q: %v", mode, line, err)
	}
	return cmd.Process.Pid, rd
}

func runProbe(t *testing.T, ctx context.Context, bin string, pid int, rd ready, secret string) map[string]string {
	t.Helper()
	cmd := nobodyCommand(ctx, bin, modeProbe,
		secretEnv+"="+secret, pidEnv+"="+strconv.Itoa(pid), addrEnv+"="+strconv.FormatUint(uint64(rd.Addr), 10))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	saw := map[string]string{}
	if err := json.Unmarshal(out, &saw); err != nil {
		t.Fatalf("probe said %q: %v", out, err)
	}
	t.Logf("the probe: %v", saw)
	return saw
}

// coreLimit is the "Max core file size" line of /proc/PID/limits: soft
// and hard.
func coreLimit(t *testing.T, pid int) (string, string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				return f[0], f[1]
			}
		}
	}
	t.Fatalf("no core file size in %s", b)
	return "", ""
}

// A process of the same uid, without harden.Process, reads the target's
// environment and memory and attaches to it; with harden.Process, each is
// refused, and no core file can be written.
func TestProcess(t *testing.T) {
	bin := nobodyBinary(t)
	// The targets inherit core files allowed, so that the hardened one's
	// 0 is its own doing.
	var was unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, &was); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_CORE, &was) })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	secret := "harden-test-secret-" + hex.EncodeToString(raw)

	t.Run("control", func(t *testing.T) {
		pid, rd := startTarget(t, ctx, bin, modeTarget, secret)
		saw := runProbe(t, ctx, bin, pid, rd, secret)
		want := map[string]string{"environ": sawSecret, "mem": sawSecret, "ptrace": attached}
		for what, w := range want {
			if saw[what] != w {
				t.Errorf("unhardened %s: %q, want %q", what, saw[what], w)
			}
		}
		if soft, hard := coreLimit(t, pid); soft == "0" || hard == "0" {
			t.Errorf("unhardened core file size %s %s, want more than 0", soft, hard)
		}
	})
	t.Run("hardened", func(t *testing.T) {
		pid, rd := startTarget(t, ctx, bin, modeHardened, secret)
		if len(rd.Failed) > 0 {
			t.Errorf("Process() = %q, want nothing failed", rd.Failed)
		}
		saw := runProbe(t, ctx, bin, pid, rd, secret)
		for _, what := range []string{"environ", "mem", "ptrace"} {
			if s := saw[what]; s != "EACCES" && s != "EPERM" {
				t.Errorf("hardened %s: %q, want EACCES or EPERM", what, s)
			}
		}
		if soft, hard := coreLimit(t, pid); soft != "0" || hard != "0" {
			t.Errorf("hardened core file size %s %s, want 0 0", soft, hard)
		}
	})
}

// Lock works within RLIMIT_MEMLOCK and says the limit beyond it (uid
// 65534: root's CAP_IPC_LOCK ignores the limit).
func TestLockLimit(t *testing.T) {
	bin := nobodyBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, err := nobodyCommand(ctx, bin, modeLock).Output()
	if err != nil {
		t.Fatalf("locker: %v (%s)", err, out)
	}
	res := map[string]string{}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("locker said %q: %v", out, err)
	}
	if res["small"] != "ok" {
		t.Errorf("Lock of a page within a page's limit: %s", res["small"])
	}
	want := fmt.Sprintf("RLIMIT_MEMLOCK %d bytes", os.Getpagesize())
	if !strings.Contains(res["big"], want) {
		t.Errorf("Lock beyond the limit: %q, want it to say %q", res["big"], want)
	}
}

// Lock shows in the process's locked memory, and Unlock takes it out.
func TestLockUnlock(t *testing.T) {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	before := lockedKiB(t)
	if err := Lock(mem); err != nil {
		t.Skipf("this process may not lock 4 pages: %v", err)
	}
	if got := lockedKiB(t); got != before+4*page/1024 {
		t.Errorf("VmLck %d kB after Lock, want %d", got, before+4*page/1024)
	}
	if err := Unlock(mem); err != nil {
		t.Fatal(err)
	}
	if got := lockedKiB(t); got != before {
		t.Errorf("VmLck %d kB after Unlock, want %d", got, before)
	}
	if Lock(nil) != nil || Unlock(nil) != nil {
		t.Error("Lock or Unlock of nothing failed")
	}
}

func lockedKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmLck:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmLck %q", rest)
			}
			return n
		}
	}
	t.Fatal("no VmLck in /proc/self/status")
	return 0
}

// memory runs Memory under the RLIMIT_MEMLOCK its parent gave and says
// what it said and how much is locked, as JSON.
func memory() int {
	res := map[string]any{"failed": Memory()}
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmLck:"); ok {
			res["vmlck"] = strings.TrimSpace(rest)
		}
	}
	return map[bool]int{true: 0, false: 1}[json.NewEncoder(os.Stdout).Encode(res) == nil]
}

// Memory locks the whole process where that cannot fail later (root
// here), and only says so under a finite limit (uid 65534).
func TestMemory(t *testing.T) {
	bin := nobodyBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	run := func(cmd *exec.Cmd) (failed []string, vmlck string) {
		t.Helper()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("memory: %v (%s)", err, out)
		}
		var res struct {
			Failed []string
			Vmlck  string
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("memory said %q: %v", out, err)
		}
		return res.Failed, res.Vmlck
	}
	nobody := nobodyCommand(ctx, bin, modeMemory)
	nobody.SysProcAttr.Setpgid = true
	if failed, vmlck := run(nobody); len(failed) != 1 || !strings.Contains(failed[0], "RLIMIT_MEMLOCK") || vmlck != "0 kB" {
		// A finite limit for uid 65534 unless this machine's is unlimited.
		var l unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l) == nil && l.Cur != unix.RLIM_INFINITY {
			t.Errorf("under a finite limit: said %q, locked %s", failed, vmlck)
		}
	}
	root := nobodyCommand(ctx, bin, modeMemory)
	root.SysProcAttr.Credential = nil
	if failed, vmlck := run(root); len(failed) != 0 || vmlck == "0 kB" || vmlck == "" {
		t.Errorf("as root: said %q, locked %s", failed, vmlck)
	}
}

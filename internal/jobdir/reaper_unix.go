//go:build unix

package jobdir

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

type reaper struct {
	w    *os.File
	proc *os.Process
}

// startReaper starts self as the directory's reaper, in a session of its
// own (a Ctrl-C meant for the job does not reach it), holding the read end
// of a pipe whose write end only this process has.
func startReaper(self, dir string) (reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return reaper{}, err
	}
	defer r.Close()
	cmd := exec.Command(self)
	// argv[0] "devpi-credd": the binary's name, whatever the file's.
	cmd.Args = []string{"devpi-credd"}
	cmd.Env = []string{ReaperEnv + "=" + dir}
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return reaper{}, err
	}
	return reaper{w: w, proc: cmd.Process}, nil
}

// release closes the pipe: the reaper removes what is left and exits; it
// is waited for briefly so that no zombie is left while this process
// lives on.
func (r reaper) release() {
	if r.w == nil {
		return
	}
	r.w.Close()
	done := make(chan struct{})
	go func() { _, _ = r.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// Reap is the reaper's whole life: it waits until stdin (the job's pipe)
// closes, then removes dir. Signals that end jobs do not end it; the
// directory must go whatever happened to the job.
func Reap(dir string, stdin io.Reader) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	_, _ = io.Copy(io.Discard, stdin)
	if !filepath.IsAbs(dir) || !ours(dir) {
		return 2
	}
	if err := os.RemoveAll(dir); err != nil {
		return 1
	}
	return 0
}

func ownedByMe(st os.FileInfo) bool {
	uid, ok := safefile.OwnerUID(st)
	return ok && uid == os.Getuid()
}

// running reports whether pid runs and, where the kernel says when it
// started, started at start.
func running(pid int, start string) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	if now := processStart(pid); start != "" && now != "" && now != start {
		return false // the PID was reused
	}
	return true
}

// processStart is field 22 of /proc/PID/stat (start time in clock ticks
// since boot), or "" where there is no /proc.
func processStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// pidNamespace names this process's PID namespace ("pid:[4026531836]"),
// or "" where the system does not say.
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

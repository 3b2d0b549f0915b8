package job

import (
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// ProtectProcess makes this process undumpable: no core file, and its
// /proc/PID/environ and mem are no longer readable by the user's other
// processes, exec's child among them. It guards against accidents, not
// against a hostile process of the same user, which has other ways in.
func ProtectProcess() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }

// childProcAttr kills exec's child when exec dies, even by SIGKILL.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// lockThread pins the goroutine to its thread while the child runs: the
// parent-death signal fires when the thread that started the child ends.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

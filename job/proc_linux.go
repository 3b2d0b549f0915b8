package job

import (
	"runtime"
	"syscall"
)

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

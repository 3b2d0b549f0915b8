package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Process makes this process undumpable and leaves it no core file. The
// first makes /proc/PID/mem, environ and maps root's and refuses ptrace
// from the same uid without CAP_SYS_PTRACE; execve resets it, so the
// process that holds the secrets calls this itself. It returns what did
// not hold, in words; nothing when all did.
func Process() []string {
	var failed []string
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		failed = append(failed, fmt.Sprintf("still dumpable: PR_SET_DUMPABLE 0: %v", err))
	}
	return append(failed, noCore()...)
}

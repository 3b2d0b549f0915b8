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

// Memory keeps the whole process out of swap (mlockall of current and
// future pages, each locked as it is first touched) where that cannot
// fail later: RLIMIT_MEMLOCK unlimited (the system unit's
// LimitMEMLOCK=infinity) or CAP_IPC_LOCK (root). Under a finite limit the
// Go heap would outgrow it and a later allocation would kill the daemon,
// so it says instead that secrets may reach swap: no Go string (a token,
// a passphrase) can be locked on its own.
func Memory() []string {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l); err != nil {
		return []string{"secrets may reach swap: RLIMIT_MEMLOCK: " + err.Error()}
	}
	if l.Cur != unix.RLIM_INFINITY && unix.Geteuid() != 0 {
		return []string{fmt.Sprintf("secrets may reach swap: RLIMIT_MEMLOCK is %s, not unlimited (LimitMEMLOCK=infinity in the unit locks the daemon's memory)", memlockLimit())}
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		return []string{"secrets may reach swap: mlockall: " + err.Error()}
	}
	return nil
}

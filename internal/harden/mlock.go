//go:build linux || darwin

package harden

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// noCore sets RLIMIT_CORE to 0, the hard limit too, so that a process of
// the same user cannot raise it again (prlimit) and have a crash write the
// secrets to a file.
func noCore() []string {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return []string{fmt.Sprintf("core files possible: RLIMIT_CORE 0: %v", err)}
	}
	return nil
}

// Lock keeps b's pages out of swap (mlock) where RLIMIT_MEMLOCK allows;
// the error says the limit when it does not, and is never a reason to
// stop. Locks do not nest: a page shared with another locked buffer is
// unlocked with either, so lock buffers of their own pages.
func Lock(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.Mlock(b); err != nil {
		return fmt.Errorf("locking %d bytes out of swap: %w (RLIMIT_MEMLOCK %s)", len(b), err, memlockLimit())
	}
	return nil
}

// Unlock undoes Lock.
func Unlock(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.Munlock(b); err != nil {
		return fmt.Errorf("unlocking %d bytes: %w", len(b), err)
	}
	return nil
}

func memlockLimit() string {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l); err != nil {
		return "unknown: " + err.Error()
	}
	if l.Cur == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(uint64(l.Cur), 10) + " bytes"
}

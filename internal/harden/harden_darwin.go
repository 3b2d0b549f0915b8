package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Process refuses debuggers (PT_DENY_ATTACH: a later attach fails, and
// one already attached ends the process) and leaves the process no core
// file. It returns what did not hold, in words; nothing when all did.
func Process() []string {
	var failed []string
	if err := unix.PtraceDenyAttach(); err != nil {
		failed = append(failed, fmt.Sprintf("debuggers may attach: PT_DENY_ATTACH: %v", err))
	}
	return append(failed, noCore()...)
}

// Memory is not available here: macOS has no mlockall for a process's
// future pages.
func Memory() []string { return []string{"secrets may reach swap: no mlockall on darwin"} }

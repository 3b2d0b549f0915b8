//go:build !linux && !darwin

package harden

import (
	"errors"
	"fmt"
	"runtime"
)

// Process reports that this system's protections are not used here: the
// process stays open to its user's debuggers and memory readers.
func Process() []string {
	return []string{fmt.Sprintf("no protection from debuggers, memory readers or core files on %s", runtime.GOOS)}
}

// Lock is not available here.
func Lock(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return fmt.Errorf("locking memory out of swap on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Unlock undoes Lock: nothing here.
func Unlock([]byte) error { return nil }

// Memory is not available here.
func Memory() []string {
	return []string{fmt.Sprintf("secrets may reach swap: no memory locking on %s", runtime.GOOS)}
}

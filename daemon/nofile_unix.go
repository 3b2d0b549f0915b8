//go:build unix

package daemon

import "syscall"

// softNoFile is RLIMIT_NOFILE's soft limit: the descriptors this process
// may hold (Go raised it to the hard limit at start).
func softNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return uint64(l.Cur), nil
}

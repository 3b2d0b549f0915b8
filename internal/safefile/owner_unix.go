//go:build unix

package safefile

import (
	"io/fs"
	"syscall"
)

// OwnerUID is the uid that owns a file (false where the system has no
// such notion or did not say).
func OwnerUID(st fs.FileInfo) (int, bool) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid), true
	}
	return 0, false
}

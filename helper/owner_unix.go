//go:build unix

package helper

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkSocketDir refuses a socket whose directory another user owns or may
// write to: such a user could have put a daemon of their own there, which
// would learn every URL asked for and could hand out anything.
func checkSocketDir(socket string) error {
	dir := filepath.Dir(socket)
	st, err := os.Stat(dir)
	if err != nil {
		return nil // the dial reports what is missing
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok && int(s.Uid) != os.Getuid() && s.Uid != 0 {
		return fmt.Errorf("refusing the socket %s: its directory belongs to uid %d", socket, s.Uid)
	}
	if st.Mode().Perm()&0o022 != 0 && st.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("refusing the socket %s: others may write to its directory", socket)
	}
	return nil
}

//go:build unix

package helper

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// checkSocketDir refuses a socket whose directory is a symbolic link, belongs
// to a user the client does not trust, or may be written by group or others:
// another user could have made it (with XDG_RUNTIME_DIR unset, clients look
// in /tmp/devpi-credd-UID, a name anyone can take first) and put a daemon of
// their own there, which would learn every URL asked for and could hand out
// anything. Lstat, not Stat: a link to a root-owned sticky directory such as
// /dev/shm must not pass for root's.
func checkSocketDir(socket string, trusted func(uid int) bool) error {
	dir := filepath.Dir(socket)
	st, err := os.Lstat(dir)
	if err != nil {
		return nil // the dial reports what is missing
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("refusing the socket %s: its directory is a symbolic link, which another user may have put there", socket)
	case !st.IsDir():
		return fmt.Errorf("refusing the socket %s: %s is not a directory", socket, dir)
	}
	if uid, ok := safefile.OwnerUID(st); ok && !trusted(uid) {
		return fmt.Errorf("refusing the socket %s: its directory belongs to uid %d, not to you (uid %d); if that user's daemon lets you in (allow_uids), set DEVPI_CREDD_DAEMON_UID=%d", socket, uid, os.Getuid(), uid)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("refusing the socket %s: others may write to its directory (mode %04o)", socket, st.Mode().Perm())
	}
	return nil
}

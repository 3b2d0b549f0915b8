package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// listen opens the daemon's Unix socket. Its directory is created 0700 and
// must be private and ours: a socket in a directory others can write to
// could be swapped under the clients. A socket left by a crashed daemon is
// removed only when nothing answers on it.
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another socket path", path)
		}
		if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("another devpi-credd is already serving on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o600); err != nil {
			l.Close()
			return nil, fmt.Errorf("securing socket: %w", err)
		}
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

func checkPrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("socket directory %s is open to others (mode %04o); run: chmod 700 %s", dir, st.Mode().Perm(), dir)
	}
	if uid, ok := ownerUID(st); ok && uid != os.Getuid() {
		return errors.New("socket directory " + dir + " belongs to another user")
	}
	return nil
}

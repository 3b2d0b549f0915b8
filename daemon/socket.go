package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// socketListener is the daemon's socket and the lock that makes it ours.
type socketListener struct {
	*net.UnixListener
	unlock func()
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.unlock()
	return err
}

// listen opens the daemon's Unix socket. Its directory is created and must
// belong to the user and be writable by nobody else: a socket in a
// directory others can write to could be swapped under the clients. The
// directory is 0700 and the socket 0600, unless shared (allow_uids is set):
// then 0711 and 0666, and the peer check alone decides who is answered.
//
// A lock file beside the socket makes one daemon its owner; a socket left
// by a crashed daemon is replaced only when its lock is free and nothing
// accepts connections on it.
func listen(path string, shared bool) (*socketListener, error) {
	dir := filepath.Dir(path)
	dirMode, sockMode := fs.FileMode(0o700), fs.FileMode(0o600)
	if shared {
		dirMode, sockMode = 0o711, 0o666
	}
	if err := prepareSocketDir(dir, dirMode); err != nil {
		return nil, err
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*socketListener, error) {
		unlock()
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return fail(fmt.Errorf("%s exists and is not a socket; remove it or choose another socket path", path))
		}
		c, err := net.DialTimeout("unix", path, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return fail(fmt.Errorf("another devpi-credd is already serving on %s", path))
		}
		// Only a refused connection proves nobody listens; a full backlog
		// (EAGAIN) or a timeout means a busy daemon.
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fail(fmt.Errorf("%s is there but does not answer (%v); is another devpi-credd busy?", path, err))
		}
		if err := os.Remove(path); err != nil {
			return fail(fmt.Errorf("removing stale socket: %w", err))
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fail(fmt.Errorf("listening on %s: %w", path, err))
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, sockMode); err != nil {
			l.Close()
			return fail(fmt.Errorf("securing socket: %w", err))
		}
	}
	l.SetUnlinkOnClose(true)
	return &socketListener{UnixListener: l, unlock: unlock}, nil
}

// prepareSocketDir creates dir, refuses it when it is a symlink or belongs
// to another user, and gives it mode: the daemon's own directory is the
// daemon's to keep private.
func prepareSocketDir(dir string, mode fs.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("creating socket directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("socket directory %s is a symlink; use the real path", dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if uid, ok := safefile.OwnerUID(st); ok && uid != os.Getuid() {
		return fmt.Errorf("socket directory %s belongs to uid %d, not to this user", dir, uid)
	}
	if st.Mode().Perm() != mode {
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("securing socket directory: %w", err)
		}
	}
	return nil
}

// Package safefile writes files that hold secrets: atomically (temp file,
// fsync, rename, fsync of the directory) and with a private mode from the
// first byte, checks that such files stay private, and reads files named in
// a config without ever blocking on a FIFO or a device.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// ErrTooOpen is wrapped by CheckPrivate when group or others may read a file.
var ErrTooOpen = errors.New("readable by group or others")

// Write replaces path with data, atomically: a reader sees the old file or
// the new one, never a mix, and a crash leaves one of them. The directory is
// created with mode 0700 when missing. perm applies from creation on, so the
// data is never readable by others, whatever the umask.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := fill(f, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// fill gives a new temporary file its mode, then its data, durably, and
// closes it. CreateTemp makes 0600 files, and the umask has its say: Chmod
// settles the final mode before any data is written.
func fill(f *os.File, data []byte, perm fs.FileMode) error {
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// CheckPrivate returns an error wrapping ErrTooOpen when group or others
// may read path (following symlinks, as a reader would). On Windows, where
// modes do not express this, it only checks that the file exists.
func CheckPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return private(path, st)
}

// ErrNotRegular is wrapped when a path names a FIFO, a device, a socket or
// a directory where a regular file is expected.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped when a file is over the size a reader allows.
var ErrTooLarge = errors.New("too large")

// Read returns the content of path, which must be a regular file of at
// most max bytes, and what fstat said of the file that was read. It never
// blocks on a FIFO or a device: the file is opened non-blocking and checked
// on the open descriptor before a byte is read, so nothing can be swapped
// in between. Symbolic links are followed (Kubernetes secrets and Vault
// Agent sinks are links).
func Read(path string, max int64) ([]byte, fs.FileInfo, error) {
	return read(path, max, 0)
}

func read(path string, max int64, flag int) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|NonBlock|flag, 0)
	if err != nil {
		if flag&NoFollow != 0 {
			if st, lerr := os.Lstat(path); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
				return nil, st, fmt.Errorf("%s is %w (a symbolic link)", path, ErrNotRegular)
			}
		}
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, st, fmt.Errorf("%s is %w (%s)", path, ErrNotRegular, kind(st.Mode()))
	}
	if st.Size() > max {
		return nil, st, fmt.Errorf("%s is %w (%d bytes, at most %d)", path, ErrTooLarge, st.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, st, err
	}
	if int64(len(data)) > max {
		return nil, st, fmt.Errorf("%s is %w (more than %d bytes)", path, ErrTooLarge, max)
	}
	return data, st, nil
}

// ReadPrivate is Read for a file that holds a secret: group and others
// must not be able to read it (checked on the descriptor that is read).
func ReadPrivate(path string, max int64) ([]byte, error) {
	data, st, err := Read(path, max)
	if err != nil {
		return nil, err
	}
	if err := private(path, st); err != nil {
		return nil, err
	}
	return data, nil
}

func private(path string, st fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("%s is %w (mode %04o); run: chmod 600 %s", path, ErrTooOpen, mode, path)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "not a plain file"
}

// Package safefile writes files that hold secrets: atomically (temp file,
// fsync, rename, fsync of the directory) and with a private mode from the
// first byte, and checks that such files stay private.
package safefile

import (
	"errors"
	"fmt"
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
	// CreateTemp makes 0600 files; Chmod settles the final mode before any
	// data is written.
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
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
	if runtime.GOOS == "windows" {
		return nil
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("%s is %w (mode %04o); run: chmod 600 %s", path, ErrTooOpen, mode, path)
	}
	return nil
}

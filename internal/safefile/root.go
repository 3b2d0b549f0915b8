package safefile

import (
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteIn is Write for root, writing a file of another user's directory
// (setup-system, as root, into the daemon user's state directory): each
// step stays inside root (an os.Root) whatever links that user puts there,
// and the file is given to uid:gid through its descriptor before it takes
// name's place, so that no path is ever followed to change an owner. The
// directory of name must exist.
func WriteIn(root *os.Root, name string, data []byte, perm fs.FileMode, uid, gid int) error {
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".tmp-"+rand.Text())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Chown(uid, gid); err != nil {
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
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	if d, err := root.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

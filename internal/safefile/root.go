package safefile

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// WriteIn is Write for root, writing a file of another user's directory
// (setup-system, as root, into the daemon user's state directory): each
// step stays inside root (an os.Root) whatever links that user puts there,
// and the file is given to uid:gid through its descriptor before it takes
// name's place, so that no path is ever followed to change an owner. The
// directory of name must exist.
func WriteIn(root *os.Root, name string, data []byte, perm fs.FileMode, uid, gid int) error {
	// O_EXCL makes the name ours; math/rand only keeps two writers from
	// meeting (crypto/rand would weigh on every keyring lookup, which
	// links this package).
	var f *os.File
	var tmp string
	for tries := 0; ; tries++ {
		tmp = filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		var err error
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || tries == 9 {
			return err
		}
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if err := f.Chown(uid, gid); err != nil {
		return err
	}
	if err := fill(f, data, perm); err != nil {
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

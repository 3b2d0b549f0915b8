package helper

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// ExistsError: the keyring link's name is taken by another file, or a
// link to Target (another program).
type ExistsError struct{ Target string }

func (e *ExistsError) Error() string {
	if e.Target != "" {
		return "a keyring link to " + e.Target + " exists"
	}
	return "a keyring exists"
}

// LinkKeyring makes dir/keyring (keyring.exe on Windows) a symbolic link to
// target, devpi-credd, so that pip and uv run it as their keyring. A new
// link is made under a temporary name and renamed over: never a moment
// without a keyring, never a half-made one. A link to target is kept
// (created is false); another file is replaced only with force, else the
// error is an *ExistsError.
func LinkKeyring(dir, target string, force bool) (link string, created bool, err error) {
	name := "keyring"
	if runtime.GOOS == "windows" {
		name = "keyring.exe"
	}
	link = filepath.Join(dir, name)
	if st, err := os.Lstat(link); err == nil {
		was, terr := filepath.EvalSymlinks(link)
		real, _ := filepath.EvalSymlinks(target)
		isLink := st.Mode()&os.ModeSymlink != 0 && terr == nil
		switch {
		case isLink && was == real:
			return link, false, nil
		case force:
		case isLink:
			return link, false, &ExistsError{Target: was}
		default:
			return link, false, &ExistsError{}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return link, false, err
	}
	tmp := filepath.Join(dir, ".keyring.devpi-credd.tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return link, false, fmt.Errorf("creating the link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return link, false, fmt.Errorf("creating the link: %w", err)
	}
	return link, true, nil
}

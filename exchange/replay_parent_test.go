//go:build unix

package exchange

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// A replay_dir refused for its parents is not made first: a refused
// check (config check run by root, or by the wrong user) left a
// directory behind that the daemon's own user then could not use
// ("belongs to uid 0"), nor remove.
func TestDirReplayRefusedParentMakesNothing(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "a", "replay")
	if _, err := OpenDirReplay(dir); err == nil {
		t.Fatal("a replay_dir in a parent anyone can write was taken")
	}
	if _, err := os.Lstat(filepath.Join(base, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused check made %s (%v)", filepath.Join(base, "a"), err)
	}
}

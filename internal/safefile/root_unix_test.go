//go:build unix

package safefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// WriteIn writes inside its root only, with the mode asked whatever the
// umask, to the owner asked, and replaces a link put at the name instead
// of writing through it; a directory link out of the root is refused.
func TestWriteIn(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "tokens", "a.token")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4242
	}
	for _, text := range []string{"one", "two"} {
		if err := WriteIn(root, "tokens/a.token", []byte(text), 0o600, uid, gid); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "tokens", "a.token")
		st, err := os.Lstat(path)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
			t.Fatalf("%v %v", st.Mode(), err)
		}
		if owner, _ := OwnerUID(st); owner != uid {
			t.Errorf("owner %d, want %d", owner, uid)
		}
		if b, _ := os.ReadFile(path); string(b) != text {
			t.Errorf("read %q, want %q", b, text)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("wrote through the link: %q", b)
	}
	if err := WriteIn(root, "out/x", []byte("x"), 0o600, uid, gid); err == nil {
		t.Error("wrote through a directory link out of the root")
	}
	if _, err := os.Lstat(filepath.Join(outside, "x")); err == nil {
		t.Error("a file appeared outside the root")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tokens"))
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
}

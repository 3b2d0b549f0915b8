//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadOwnPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadOwnPrivate(path, 16); err != nil || string(b) != "key" {
		t.Fatalf("%q %v", b, err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwnPrivate(link, 16); err != nil {
		t.Errorf("a link to a private file of ours: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadOwnPrivate(path, 16); !errors.Is(err, ErrTooOpen) {
			t.Errorf("mode %04o: %v", mode, err)
		}
		if _, err := ReadOwnPrivate(link, 16); !errors.Is(err, ErrTooOpen) {
			t.Errorf("a link to a file of mode %04o: %v", mode, err)
		}
	}
	if _, err := ReadOwnPrivate(dir, 16); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a directory: %v", err)
	}
}

// A file of another user: only root can make one here.
func TestReadOwnPrivateOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give a file to another uid")
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwnPrivate(path, 16); err == nil {
		t.Error("another uid's file: read")
	}
}

func TestReadOwnNoLink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sealed")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadOwnNoLink(path, 16); err != nil || string(b) != "x" {
		t.Fatalf("%q %v", b, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwnNoLink(link, 16); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a link to a private file of ours: %v", err)
	}
	if err := os.Chmod(path, 0o620); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwnNoLink(path, 16); !errors.Is(err, ErrTooOpen) {
		t.Errorf("mode 0620: %v", err)
	}
}

//go:build unix

package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

func TestSealedModeAndKind(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s := testSealed(t)
	if err := s.Seal(testPass, testVault(t)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(s.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (umask 0), %v; want 0600", st.Mode(), err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o620, 0o602} {
		if err := os.Chmod(s.Path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(testPass); !errors.Is(err, safefile.ErrTooOpen) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if err := os.Chmod(s.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(testPass); err != nil {
		t.Fatalf("mode 0600 again: %v", err)
	}

	// A link to the very store is refused: the store is never a link.
	link := Sealed{Path: filepath.Join(filepath.Dir(s.Path), "link.age")}
	if err := os.Symlink(s.Path, link.Path); err != nil {
		t.Fatal(err)
	}
	if ok, _ := link.Exists(); !ok {
		t.Error("Exists of a link: false")
	}
	if _, err := link.Open(testPass); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("a link: %v", err)
	}
	// A FIFO nobody writes to: refused at once, not waited on.
	fifo := Sealed{Path: filepath.Join(t.TempDir(), "fifo.age")}
	if err := syscall.Mkfifo(fifo.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fifo.Exists(); !ok {
		t.Error("Exists of a FIFO: false")
	}
	done := make(chan error, 1)
	go func() { _, err := fifo.Open(testPass); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, safefile.ErrNotRegular) {
			t.Errorf("a FIFO: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Open blocked on a FIFO")
	}
	dir := Sealed{Path: t.TempDir()}
	if _, err := dir.Open(testPass); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("a directory: %v", err)
	}
}

// Another user's file, even private, is refused: whoever owns it can
// read it. Only root can make one here.
func TestSealedOtherOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give a file to another uid")
	}
	s := testSealed(t)
	if err := s.Seal(testPass, testVault(t)); err != nil {
		t.Fatal(err)
	}
	a := ApprovalFile{Path: ApprovalPath(filepath.Dir(s.Path))}
	if err := a.Save(testVault(t).Approval); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{s.Path, a.Path} {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Open(testPass); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("another uid's sealed store: %v", err)
	}
	if _, err := a.Load(); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("another uid's approval record: %v", err)
	}
}

func TestApprovalFileModeAndKind(t *testing.T) {
	f := ApprovalFile{Path: ApprovalPath(t.TempDir())}
	if err := f.Save(testVault(t).Approval); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := os.Chmod(f.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(); !errors.Is(err, safefile.ErrTooOpen) {
		t.Errorf("mode 0644: %v", err)
	}
	link := ApprovalFile{Path: f.Path + ".link"}
	if err := os.Chmod(f.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.Path, link.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := link.Load(); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("a link: %v", err)
	}
}

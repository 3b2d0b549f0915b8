//go:build unix

package helper

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLinkKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	self := filepath.Join(t.TempDir(), "devpi-credd")
	other := filepath.Join(t.TempDir(), "keyring-py")
	for _, p := range []string{self, other} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link, created, err := LinkKeyring(dir, self, false)
	if err != nil || !created || link != filepath.Join(dir, "keyring") {
		t.Fatalf("first link: %s %v %v", link, created, err)
	}
	if got, _ := os.Readlink(link); got != self {
		t.Errorf("the link points at %s", got)
	}
	if _, created, err := LinkKeyring(dir, self, false); err != nil || created {
		t.Errorf("again: created %v, %v; want it kept", created, err)
	}
	// Another program's keyring is replaced only with force.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	var ee *ExistsError
	if _, _, err := LinkKeyring(dir, self, false); !errors.As(err, &ee) || ee.Target != other {
		t.Errorf("over another keyring: %v", err)
	}
	if _, created, err := LinkKeyring(dir, self, true); err != nil || !created {
		t.Errorf("with force: %v %v", created, err)
	}
	// A plain file: refused without force, and left as it was.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte("precious"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LinkKeyring(dir, self, false); !errors.As(err, &ee) || ee.Target != "" {
		t.Errorf("over a file: %v", err)
	}
	if b, _ := os.ReadFile(link); string(b) != "precious" {
		t.Error("the file was changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the directory: %v", entries)
	}
}

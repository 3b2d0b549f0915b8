//go:build unix

package daemon

// Tests of file and socket modes, and of renaming a file that is open:
// Unix semantics.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/helper"
)

func TestCheckSocketDir(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private, open, traversable := mk("private", 0o700), mk("open", 0o755), mk("traverse", 0o711)
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	// A directory owned by someone else: as root, make one; otherwise "/"
	// belongs to root, who is someone else.
	foreign := "/"
	if os.Getuid() == 0 {
		foreign = mk("foreign", 0o700)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		dir      string
		mode     os.FileMode
		want     string
		wantMode os.FileMode
	}{
		{private, 0o700, "", 0o700},
		{traversable, 0o711, "", 0o711},
		{open, 0o700, "", 0o700}, // ours: made private
		{filepath.Join(base, "new", "dir"), 0o700, "", 0o700},
		{link, 0o700, "symlink", 0},
		{foreign, 0o700, "belongs to uid", 0},
	} {
		err := prepareSocketDir(tt.dir, tt.mode)
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("prepareSocketDir(%s, %o) = %v, want %q", tt.dir, tt.mode, err, tt.want)
		}
		if tt.wantMode != 0 {
			if st, _ := os.Stat(tt.dir); st == nil || st.Mode().Perm() != tt.wantMode {
				t.Errorf("%s: mode %v, want %o", tt.dir, st.Mode(), tt.wantMode)
			}
		}
	}
	if st, _ := os.Lstat(private); st.Mode().Perm() != 0o700 {
		t.Error("a refused symlink changed its target")
	}
	// A path that is there but not a socket is left alone.
	sock := filepath.Join(private, "s")
	if err := os.WriteFile(sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(sock, false); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Error("listen destroyed a file")
	}
}

// With allow_uids the other uids connect to a shared socket (0666 in a
// 0711 directory); the owner's socket stays 0600 in 0700, out of their
// reach, so that no flood of theirs can fill its backlog.
func TestSharedSocketForAllowUIDs(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	f.stop()
	text, _ := os.ReadFile(f.config)
	shared := filepath.Join(f.dir, "shared", "s")
	_ = os.WriteFile(f.config, []byte(fmt.Sprintf("allow_uids = [4242]\nshared_socket = %q\n%s", shared, text)), 0o600)
	_, stop := f.restart(t, Options{})
	for _, tt := range []struct {
		sock      string
		mode, dir os.FileMode
	}{{f.socket, 0o600, 0o700}, {shared, 0o666, 0o711}} {
		st, _ := os.Stat(tt.sock)
		dst, _ := os.Stat(filepath.Dir(tt.sock))
		if st == nil || dst == nil || st.Mode().Perm() != tt.mode || dst.Mode().Perm() != tt.dir {
			t.Errorf("%s: %v in %v, want %v in %v", tt.sock, st, dst, tt.mode, tt.dir)
		}
	}
	// Both answer.
	for _, sock := range []string{f.socket, shared} {
		if _, err := (&helper.Client{Socket: sock}).Status(context.Background()); err != nil {
			t.Errorf("%s: %v", sock, err)
		}
	}
	if st := f.d.Status(); st.SharedSocket != shared {
		t.Errorf("status: shared socket %q", st.SharedSocket)
	}
	stop()
	if _, err := os.Lstat(shared); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the shared socket is left after stop: %v", err)
	}
}

// An audit log removed (or rotated away) without a SIGHUP is created
// anew: no line goes to a file nobody can see.
func TestRemovedAuditLogIsRecreated(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	if _, err := f.get("http://h/alice/dev/"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.audit, f.audit+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.get("http://h/alice/dev/"); err != nil {
		t.Fatal(err)
	}
	f.stop()
	if lines := readLines(t, f.audit); len(lines) != 1 || !strings.Contains(lines[0], `"event":"mint"`) {
		t.Errorf("the new audit log: %q", lines)
	}
	if st, _ := os.Stat(f.audit); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the new audit log's mode: %v", st)
	}
}

//go:build unix

package helper

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 8, item 1: a client refuses a socket directory that another user
// could have made: a symbolic link (even to a root-owned sticky directory
// such as /dev/shm), a directory others may write to, one owned by another
// uid; it accepts its own private one.
func TestClientRefusesSquattedSocketDirectory(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(p); err != nil || st.Mode()&(os.ModePerm|os.ModeSticky) != mode {
			t.Fatalf("%s: mode %v, want %v", name, st.Mode(), mode)
		}
		return p
	}
	private := mk("private", 0o700)
	sticky := mk("shm", os.ModeSticky|0o777) // as /dev/shm and /tmp are
	groupWritable := mk("group", 0o770)
	link := filepath.Join(base, "link")
	if err := os.Symlink(sticky, link); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		private:       "not running",
		sticky:        "others may write",
		groupWritable: "others may write",
		link:          "symbolic link",
	}
	if os.Getuid() == 0 {
		foreign := mk("foreign", 0o700)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[foreign] = "belongs to uid 65534"
	}
	for dir, want := range cases {
		_, err := (&Client{Socket: filepath.Join(dir, "socket")}).Status(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", filepath.Base(dir), err, want)
		}
	}
	// A daemon of another user's, named in TrustUIDs, passes the
	// directory check.
	if os.Getuid() == 0 {
		foreign := filepath.Join(base, "foreign", "socket")
		_, err := (&Client{Socket: foreign, TrustUIDs: []int{65534}}).Status(context.Background())
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("trusted uid: %v", err)
		}
	}
}

// The client asks the kernel who answers: its own user passes.
func TestClientChecksThePeer(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"pid": 1}`))
		}))
	}()
	st, err := (&Client{Socket: sock}).Status(context.Background())
	if err != nil || st.PID != 1 {
		t.Fatalf("own daemon: %+v, %v", st, err)
	}
	c := &Client{Socket: sock}
	if !c.trusted(os.Getuid()) || !c.trusted(0) || c.trusted(os.Getuid()+4242) {
		t.Error("trusted() is wrong")
	}
}

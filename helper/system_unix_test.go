//go:build unix

package helper

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"testing"
)

// System mode: a client whose own socket is not there uses the system
// daemon's shared socket, if that is there, and trusts the system user's
// uid for it; the user is looked up only then. $DEVPI_CREDD_SOCKET wins.
func TestClientFindsTheSystemDaemon(t *testing.T) {
	dir := t.TempDir()
	runtime := filepath.Join(dir, "run")
	own := filepath.Join(runtime, "devpi-credd", "socket")
	shared := filepath.Join(dir, "shared")
	for _, d := range []string{filepath.Dir(own), shared} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(shared, 0o711); err != nil { // as serve makes a shared socket's
		t.Fatal(err)
	}
	system := filepath.Join(shared, "socket")
	serve := func(path string, pid string) func() {
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"pid": ` + pid + `}`)) }))
		}()
		return func() { l.Close() }
	}
	stopSystem := serve(system, "7")
	defer stopSystem()

	type want struct {
		socket  string
		trust   []int
		lookups int
	}
	check := func(name string, env map[string]string, lookupErr error, w want) *Client {
		t.Helper()
		lookups := 0
		sys := systemDaemon{socket: system, lookup: func(n string) (*user.User, error) {
			lookups++
			if n != "devpi-credd" {
				t.Errorf("%s: looked up %q", name, n)
			}
			if lookupErr != nil {
				return nil, lookupErr
			}
			return &user.User{Username: n, Uid: "4242"}, nil
		}}
		env["XDG_RUNTIME_DIR"], env["HOME"] = runtime, dir
		c, _, _ := newClient(filepath.Join(dir, "no-config.toml"), func(k string) string { return env[k] }, sys)
		if c.Socket != w.socket || !slices.Equal(c.TrustUIDs, w.trust) || lookups != w.lookups {
			t.Errorf("%s: socket %s, trusting %v, %d lookups; want %s, %v, %d", name, c.Socket, c.TrustUIDs, lookups, w.socket, w.trust, w.lookups)
		}
		return c
	}

	c := check("no own socket", map[string]string{}, nil, want{system, []int{4242}, 1})
	if st, err := c.Status(context.Background()); err != nil || st.PID != 7 {
		t.Errorf("the system daemon through the client: %+v, %v", st, err)
	}
	check("no own socket, DEVPI_CREDD_DAEMON_UID", map[string]string{"DEVPI_CREDD_DAEMON_UID": "99"}, nil, want{system, []int{99, 4242}, 1})
	check("no system user", map[string]string{}, errors.New("unknown user devpi-credd"), want{own, nil, 1})
	check("DEVPI_CREDD_SOCKET", map[string]string{"DEVPI_CREDD_SOCKET": own}, nil, want{own, nil, 0})

	stopOwn := serve(own, "1")
	check("own socket", map[string]string{}, nil, want{own, nil, 0})
	// A socket left by the user's own daemon, which is down: its error
	// is the one to read, not the system daemon's answer.
	stopOwn()
	if _, err := os.Lstat(own); err != nil {
		if err := os.WriteFile(own, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check("own socket left behind", map[string]string{}, nil, want{own, nil, 0})
	if err := os.Remove(own); err != nil {
		t.Fatal(err)
	}

	stopSystem()
	if err := os.Remove(system); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	check("no system socket", map[string]string{}, nil, want{own, nil, 0})
}

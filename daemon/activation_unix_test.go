//go:build unix

package daemon

// Issue 15: a socket passed by socket activation is checked as one the
// daemon makes.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/helper"
)

// passedSocket listens on a Unix socket named name in a new directory of
// mode dirMode, and gives the socket mode sockMode, as systemd's
// DirectoryMode= and SocketMode= do.
func passedSocket(t *testing.T, dirMode, sockMode os.FileMode) (net.Listener, string) {
	t.Helper()
	// Short: a Unix socket path has ~100 bytes at most.
	base, err := os.MkdirTemp("", "act")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "socket")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(path, sockMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		t.Fatal(err)
	}
	return l, path
}

// activatedDaemon is a daemon on f's config that has not started serving.
func activatedDaemon(t *testing.T) *Daemon {
	t.Helper()
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	f.stop()
	d, err := New(Options{ConfigPath: f.config, Getenv: func(string) string { return "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// A private socket in a private directory is served; a socket others can
// connect to, one in a directory others can write, a TCP socket, a second
// socket are refused, in one line, before anything is served.
func TestActivatedSocketIsChecked(t *testing.T) {
	d := activatedDaemon(t)
	good, path := passedSocket(t, 0o700, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunActivated(ctx, []net.Listener{good}, nil) }()
	if _, err := (&helper.Client{Socket: path}).Status(context.Background()); err != nil {
		t.Errorf("a 0600 socket in a 0700 directory: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serving on the passed socket: %v", err)
	}
	traversable, _ := passedSocket(t, 0o711, 0o600)
	loose, _ := passedSocket(t, 0o700, 0o666)
	group, _ := passedSocket(t, 0o700, 0o660)
	open, _ := passedSocket(t, 0o777, 0o600)
	groupDir, _ := passedSocket(t, 0o770, 0o600)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	two1, _ := passedSocket(t, 0o700, 0o600)
	two2, _ := passedSocket(t, 0o700, 0o600)
	cases := []struct {
		name string
		ls   []net.Listener
		want string
	}{
		{"0711 directory", []net.Listener{traversable}, ""},
		{"0666 socket", []net.Listener{loose}, "mode 0666"},
		{"0660 socket", []net.Listener{group}, "mode 0660"},
		{"0777 directory", []net.Listener{open}, "mode 0777"},
		{"0770 directory", []net.Listener{groupDir}, "mode 0770"},
		{"tcp", []net.Listener{tcp}, "tcp socket"},
		{"two sockets", []net.Listener{two1, two2}, "2 sockets"},
	}
	if runtime.GOOS == "linux" {
		abstract, err := net.Listen("unix", "@devpi-credd-test-"+filepath.Base(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		defer abstract.Close()
		cases = append(cases, struct {
			name string
			ls   []net.Listener
			want string
		}{"abstract socket", []net.Listener{abstract}, "abstract"})
	}
	for _, tt := range cases {
		// A refusal comes at once; a socket wrongly taken is served until
		// the timeout, and the nil it then returns fails the case.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if tt.want == "" {
			// Served until cancelled: cancel at once.
			cancel()
		}
		err := d.RunActivated(ctx, tt.ls, nil)
		cancel()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (!errors.Is(err, errPassedSocket) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %v, want a one-line refusal saying %q", tt.name, err, tt.want)
		}
	}
}

// The passed socket must be the user's own, in a directory of the user's.
func TestActivatedSocketOfAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give a socket to another uid; CI runs as root")
	}
	d := activatedDaemon(t)
	// A refusal comes at once; a socket wrongly taken is served until the
	// timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	theirs, path := passedSocket(t, 0o700, 0o600)
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := d.RunActivated(ctx, []net.Listener{theirs}, nil); !errors.Is(err, errPassedSocket) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("another uid's socket: %v", err)
	}
	inTheirs, path := passedSocket(t, 0o700, 0o600)
	if err := os.Lchown(filepath.Dir(path), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := d.RunActivated(ctx, []net.Listener{inTheirs}, nil); !errors.Is(err, errPassedSocket) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("a socket in another uid's directory: %v", err)
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// errPassedSocket: a socket passed by socket activation that the daemon
// will not serve on.
var errPassedSocket = errors.New("refusing the socket systemd passed")

// RunActivated serves (see RunOn) on the socket systemd passed (socket
// activation: the first lookup starts the daemon), once it is checked as
// one the daemon makes (see checkPassedSocket). A socket refused is
// closed, and nothing is served.
func (d *Daemon) RunActivated(ctx context.Context, ls []net.Listener, reload <-chan struct{}) error {
	if err := checkPassedSockets(ls); err != nil {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	if got, want := ls[0].Addr().String(), d.Config().Socket; got != want {
		d.log.Warn("the socket systemd passed is not the config's: clients look where the config says", "socket", got, "config_socket", want)
	}
	d.log.Info("socket activation: serving on the socket systemd passed", "socket", ls[0].Addr().String())
	return d.RunOn(ctx, ls[0], reload)
}

// checkPassedSockets holds a passed socket to what listen makes: one Unix
// socket with a path (an abstract one has no mode: anyone may connect),
// not a link, the user's own and mode 0600 (the owner's socket: the
// shared one, 0666, is opened by the daemon itself), in a directory of
// the user's that nobody else can write (where it could be swapped under
// the clients). systemd's SocketMode= and DirectoryMode= say so; the
// unit devpi-credd installs sets 0600 and 0700.
func checkPassedSockets(ls []net.Listener) error {
	if len(ls) != 1 {
		return fmt.Errorf("%w: %d sockets; devpi-credd takes one (ListenStream= once)", errPassedSocket, len(ls))
	}
	if _, ok := ls[0].(*net.UnixListener); !ok {
		return fmt.Errorf("%w: a %s socket; devpi-credd takes a Unix socket (ListenStream=PATH)", errPassedSocket, ls[0].Addr().Network())
	}
	path := ls[0].Addr().String()
	if path == "" || strings.HasPrefix(path, "@") {
		return fmt.Errorf("%w: %q is an abstract socket, which any process can connect to; use a path (ListenStream=PATH)", errPassedSocket, path)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("%w: %w", errPassedSocket, err)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%w: %s is not a socket (%s)", errPassedSocket, path, st.Mode().Type())
	}
	if err := ownedByUs(path, st); err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s is mode %04o, so other users could connect; give it SocketMode=0600", errPassedSocket, path, perm)
	}
	dir := filepath.Dir(path)
	if st, err = os.Lstat(dir); err != nil {
		return fmt.Errorf("%w: %w", errPassedSocket, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: its directory %s is not a directory (%s); use the real path", errPassedSocket, dir, st.Mode().Type())
	}
	if err := ownedByUs(dir, st); err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%w: its directory %s is mode %04o, so other users could swap the socket; give it DirectoryMode=0700", errPassedSocket, dir, perm)
	}
	return nil
}

func ownedByUs(path string, st fs.FileInfo) error {
	if uid, ok := safefile.OwnerUID(st); ok && uid != os.Getuid() {
		return fmt.Errorf("%w: %s belongs to uid %d, not to this user", errPassedSocket, path, uid)
	}
	return nil
}

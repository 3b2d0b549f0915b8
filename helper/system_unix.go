//go:build unix

package helper

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"strconv"

	"github.com/devpi-credd/devpi-credd/internal/xdg"
)

// systemDaemon is where a system-mode daemon listens for the users it
// serves, and how its user's uid is found (docs/service.md).
type systemDaemon struct {
	socket string
	lookup func(name string) (*user.User, error)
}

func theSystemDaemon() systemDaemon {
	return systemDaemon{socket: xdg.SystemSocket, lookup: user.Lookup}
}

// use points c at the system daemon when c's own socket is not there and
// the system daemon's is: the user is served in system mode. The system
// user's uid is trusted for that socket, and looked up (in /etc/passwd,
// which only root writes) only then: with a daemon of the user's own, a
// lookup costs one lstat more. A socket that is there but does not answer
// is the user's own daemon, down; its error is the one worth reading.
func (s systemDaemon) use(c *Client) {
	if _, err := os.Lstat(c.Socket); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	if _, err := os.Lstat(s.socket); err != nil {
		return
	}
	u, err := s.lookup(xdg.SystemUser)
	if err != nil {
		return
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil || uid < 0 {
		return
	}
	c.Socket = s.socket
	c.TrustUIDs = append(c.TrustUIDs, uid)
}

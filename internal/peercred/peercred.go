// Package peercred asks the kernel who is at the other end of a Unix
// socket: the daemon checks its callers with it, and clients check that the
// daemon they reached runs as their own user (or root) before they send it
// a byte.
package peercred

import (
	"errors"
	"net"
	"syscall"
)

// Cred is what the kernel says of a peer. PID is -1 where it cannot tell.
type Cred struct {
	UID int
	PID int
}

// ErrUnsupported: this system has no peer credentials on Unix sockets.
var ErrUnsupported = errors.New("this system cannot tell who is at the other end of a Unix socket")

// Of returns the credentials of c's peer; c must be a *net.UnixConn.
func Of(c net.Conn) (Cred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{UID: -1, PID: -1}, errors.New("not a Unix socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{UID: -1, PID: -1}, err
	}
	return ofRaw(raw)
}

package peercred

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported: this system tells who is calling.
const Supported = true

// Mechanism names what the kernel is asked, for status and logs.
const Mechanism = "SO_PEERCRED"

func ofRaw(raw syscall.RawConn) (Cred, error) {
	c := Cred{UID: -1, PID: -1}
	var gerr error
	err := raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			gerr = err
			return
		}
		c.UID, c.PID = int(cred.Uid), int(cred.Pid)
	})
	if err == nil {
		err = gerr
	}
	return c, err
}

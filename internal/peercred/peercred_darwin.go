package peercred

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported: this system tells who is calling.
const Supported = true

// Mechanism names what the kernel is asked, for status and logs.
const Mechanism = "LOCAL_PEERCRED"

func ofRaw(raw syscall.RawConn) (Cred, error) {
	c := Cred{UID: -1, PID: -1}
	var gerr error
	err := raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if err != nil {
			gerr = err
			return
		}
		c.UID = int(cred.Uid)
		if pid, err := unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
			c.PID = pid
		}
	})
	if err == nil {
		err = gerr
	}
	return c, err
}

package daemon

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf reads the caller's uid from the kernel (LOCAL_PEERCRED) and its pid
// (LOCAL_PEERPID).
func peerOf(c net.Conn) Peer {
	p := Peer{UID: -1, PID: -1}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return p
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return p
	}
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED); err == nil {
			p.UID, p.Known = int(cred.Uid), true
		}
		if pid, err := unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
			p.PID = pid
		}
	})
	return p
}

// peerCredentials: this system tells who is calling; an unknown caller is
// then refused.
const peerCredentials = true

// PeerCheck says what this system checks of a caller.
const PeerCheck = "LOCAL_PEERCRED: the caller's uid, from the kernel"

package daemon

import (
	"net"

	"github.com/devpi-credd/devpi-credd/internal/peercred"
)

// peerCredentials: this system tells who is calling; an unknown caller is
// then refused.
const peerCredentials = peercred.Supported

// peerOf reads the connecting process's uid and pid from the kernel: they
// cannot be forged by the client. Where the system cannot tell, Known is
// false.
func peerOf(c net.Conn) Peer {
	cred, err := peercred.Of(c)
	if err != nil {
		return Peer{UID: -1, PID: -1}
	}
	return Peer{UID: cred.UID, PID: cred.PID, Known: true}
}

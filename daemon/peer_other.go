//go:build !linux && !darwin

package daemon

import "net"

// peerOf cannot ask the kernel here (Windows has no peer credentials on
// AF_UNIX sockets): access rests on the socket directory, which lies in the
// user's profile and is private to the user.
func peerOf(net.Conn) Peer { return Peer{UID: -1, PID: -1} }

// peerCredentials: this system tells who is calling; an unknown caller is
// then refused.
const peerCredentials = false

// PeerCheck says what this system checks of a caller.
const PeerCheck = "none from the kernel: the socket's directory in the user's profile is private to the user"

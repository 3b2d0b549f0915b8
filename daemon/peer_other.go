//go:build !linux && !darwin

package daemon

import "net"

// PeerCheck says what this system checks of a caller. Windows has no peer
// credentials on AF_UNIX sockets: access rests on the socket directory,
// which lies in the user's profile and is private to the user.
const PeerCheck = "none from the kernel: the socket's directory in the user's profile is private to the user"

func (p *Peer) addDetails() {}

// connectorStart: no process start times here (no ChildOnly jobs).
func connectorStart(net.Conn, int) uint64 { return 0 }

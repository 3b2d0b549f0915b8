//go:build !linux && !darwin

package daemon

// PeerCheck says what this system checks of a caller. Windows has no peer
// credentials on AF_UNIX sockets: access rests on the socket directory,
// which lies in the user's profile and is private to the user.
const PeerCheck = "none from the kernel: the socket's directory in the user's profile is private to the user"

func (p *Peer) addDetails() {}

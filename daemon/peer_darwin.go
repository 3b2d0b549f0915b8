package daemon

// PeerCheck says what this system checks of a caller.
const PeerCheck = "LOCAL_PEERCRED: the caller's uid, from the kernel"

func (p *Peer) addDetails() {}

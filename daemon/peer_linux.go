package daemon

import (
	"os"
	"strconv"

	"github.com/devpi-credd/devpi-credd/internal/peercred"
)

// PeerCheck says what this system checks of a caller.
const PeerCheck = "SO_PEERCRED: the caller's uid and pid, from the kernel"

// addDetails names the caller's executable and its parent's, for the audit
// line: for a keyring helper, the parent is the tool that ran it.
func (p *Peer) addDetails() {
	if p.PID <= 0 {
		return
	}
	p.Exe, _ = os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe")
	p.PPID = parentPID(p.PID)
	if p.PPID > 0 {
		p.ParentExe, _ = os.Readlink("/proc/" + strconv.Itoa(p.PPID) + "/exe")
	}
}

// parentPID is the caller's parent, from /proc.
func parentPID(pid int) int { return peercred.ParentPID("/proc", pid) }

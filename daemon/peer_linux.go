package daemon

import (
	"net"
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
	p.Exe = exeOf(p.PID)
	p.PPID = parentPID(p.PID)
	if p.PPID > 0 {
		p.ParentExe = exeOf(p.PPID)
	}
}

// exeOf is pid's executable, or, where that cannot be read (devpi-credd's
// commands and its keyring helper make themselves undumpable, which closes
// /proc/PID/exe to their own user), its command name.
func exeOf(pid int) string {
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
		return exe
	}
	if name := peercred.Name("/proc", pid); name != "" {
		return name + " (name only)"
	}
	return ""
}

// parentPID is the caller's parent, from /proc.
func parentPID(pid int) int { return peercred.ParentPID("/proc", pid) }

// connectorStart is when the process that connected c started, 0 when it
// has ended (see peercred.StartOf).
func connectorStart(c net.Conn, pid int) uint64 { return peercred.StartOf(c, pid) }

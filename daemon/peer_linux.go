package daemon

import (
	"os"
	"strconv"
	"strings"
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

// parentPID reads the fourth field of /proc/PID/stat; the second, the
// command name, is in parentheses and may hold spaces.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

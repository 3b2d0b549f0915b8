package daemon

import (
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peerOf reads the connecting process's credentials from the kernel
// (SO_PEERCRED): they cannot be forged by the client.
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
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			p.UID, p.PID, p.Known = int(cred.Uid), int(cred.Pid), true
		}
	})
	if p.PID > 0 {
		p.Exe, _ = os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe")
		p.PPID = parentPID(p.PID)
		if p.PPID > 0 {
			p.ParentExe, _ = os.Readlink("/proc/" + strconv.Itoa(p.PPID) + "/exe")
		}
	}
	return p
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

// peerCredentials: this system tells who is calling; an unknown caller is
// then refused.
const peerCredentials = true

// PeerCheck says what this system checks of a caller.
const PeerCheck = "SO_PEERCRED: the caller's uid and pid, from the kernel"

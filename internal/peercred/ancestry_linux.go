package peercred

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxAncestry bounds a walk up a process's parents: a process tree is far
// shallower, and a loop read from a changing /proc must end.
const maxAncestry = 4096

// DescendsFrom reports whether pid, the process that started at start
// (StartTime), is ancestor or one of its descendants, following parent
// pids in proc (/proc; tests pass a tree of their own). A pid whose
// process ended and which another process took since has another start
// time, and is not it: a worm's process that connected and exited must not
// pass for the process of the tree that took its pid. A process whose
// parent died belongs to init (or a subreaper) from then on, and so no
// longer to the tree.
func DescendsFrom(proc string, pid int, start uint64, ancestor int) bool {
	if s, ok := statOf(proc, pid); !ok || s.start != start {
		return false
	}
	for range maxAncestry {
		switch {
		case pid == ancestor:
			return true
		case pid <= 1:
			return false
		}
		pid = ParentPID(proc, pid)
	}
	return false
}

// ParentPID reads the parent pid from proc/PID/stat; 0 when it cannot be
// read.
func ParentPID(proc string, pid int) int {
	s, _ := statOf(proc, pid)
	return s.ppid
}

// StartTime is when pid started, in clock ticks after boot, from
// proc/PID/stat; 0 when it cannot be read. With the pid it names one
// process: a pid taken again by another process comes with another.
func StartTime(proc string, pid int) uint64 {
	s, _ := statOf(proc, pid)
	return s.start
}

// Name is pid's command name from proc/PID/stat (15 bytes at most), ""
// when it cannot be read: what names a process whose executable cannot be
// read (an undumpable one's /proc/PID/exe is closed to its own user).
func Name(proc string, pid int) string {
	b, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return ""
	}
	return s[i+1 : j]
}

type procStat struct {
	ppid  int
	start uint64
}

// statOf reads the fourth (parent pid) and 22nd (start time) fields of
// proc/PID/stat in one read; the second, the command name, is in
// parentheses and may hold spaces and parentheses, so the fields are
// counted after the last ')'.
func statOf(proc string, pid int) (procStat, bool) {
	b, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{ppid: ppid, start: start}, true
}

// StartOf is the start time of c's peer, the process that connected, whose
// pid is pid; 0 when that process has ended. The kernel's pidfd of the
// connector (SO_PEERPIDFD, Linux 6.5) tells whether it still runs after
// its start time is read, so that the time cannot be that of another
// process that took the pid since; older kernels have no such handle, and
// the time is read as is.
func StartOf(c net.Conn, pid int) uint64 {
	sc, ok := c.(syscall.Conn)
	if !ok || pid <= 0 {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	pidfd, gerr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		pidfd, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); err != nil {
		return 0
	}
	switch {
	case errors.Is(gerr, unix.ESRCH):
		return 0 // the connector has ended
	case gerr == nil:
		defer unix.Close(pidfd)
	}
	start := StartTime("/proc", pid)
	if gerr == nil && unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		return 0
	}
	return start
}

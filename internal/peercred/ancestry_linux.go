package peercred

import (
	"os"
	"strconv"
	"strings"
)

// maxAncestry bounds a walk up a process's parents: a process tree is far
// shallower, and a loop read from a changing /proc must end.
const maxAncestry = 4096

// DescendsFrom reports whether pid is ancestor or one of its descendants,
// following parent pids in proc (/proc; tests pass a tree of their own).
// A process whose parent died belongs to init (or a subreaper) from then
// on, and so no longer to the tree.
func DescendsFrom(proc string, pid, ancestor int) bool {
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

// ParentPID reads the fourth field of proc/PID/stat; the second, the
// command name, is in parentheses and may hold spaces and parentheses, so
// the fields are counted after the last ')'. 0 when it cannot be read.
func ParentPID(proc string, pid int) int {
	b, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
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

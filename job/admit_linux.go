package job

import (
	"os"
	"strconv"
	"strings"
)

// CanAdmitChildOnly: this system can tell a caller's ancestry (/proc), so
// a job's daemon can answer its child's processes only (Options.ChildOnly).
const CanAdmitChildOnly = true

// maxAncestry bounds the walk up a caller's parents: a process tree is far
// shallower, and a loop read from a changing /proc must end.
const maxAncestry = 4096

// descendsFrom reports whether pid is ancestor or one of its descendants,
// following the parent pids in proc's PID/stat (proc is /proc; tests pass
// their own). A process whose parent has died belongs to init (or a
// subreaper) from then on, and so no longer to the tree.
func descendsFrom(proc string, pid, ancestor int) bool {
	for range maxAncestry {
		switch {
		case pid == ancestor:
			return true
		case pid <= 1:
			return false
		}
		pid = parentPID(proc, pid)
	}
	return false
}

// parentPID reads the fourth field of proc/PID/stat; the second, the
// command name, is in parentheses and may hold spaces and parentheses,
// so the fields are counted after the last ')'. 0 when it cannot be read.
func parentPID(proc string, pid int) int {
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

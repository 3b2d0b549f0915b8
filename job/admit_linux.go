package job

import "github.com/devpi-credd/devpi-credd/internal/peercred"

// CanAdmitChildOnly: this system can tell a caller's ancestry (/proc), so
// a job's daemon can answer its child's processes only (Options.ChildOnly).
const CanAdmitChildOnly = true

func descendsFrom(pid, ancestor int) bool { return peercred.DescendsFrom("/proc", pid, ancestor) }

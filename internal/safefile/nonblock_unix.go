//go:build unix

package safefile

import "syscall"

// NonBlock is an open flag: opening a FIFO would otherwise wait for the
// other end (forever, for a FIFO nobody writes); a regular file ignores it.
const NonBlock = syscall.O_NONBLOCK

// NoFollow is an open flag: the open fails on a symbolic link.
const NoFollow = syscall.O_NOFOLLOW

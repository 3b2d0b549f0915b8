//go:build !windows

package helper

import (
	"io"
	"os"
)

// OpenTTY opens the process's controlling terminal. Without one (setsid,
// a CI job, a service) the open fails: there is nobody to ask.
func OpenTTY() (io.ReadWriteCloser, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) }

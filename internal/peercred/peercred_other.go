//go:build !linux && !darwin

package peercred

import "syscall"

// Supported: this system tells who is calling.
const Supported = false

// Mechanism names what the kernel is asked, for status and logs.
const Mechanism = "none"

func ofRaw(syscall.RawConn) (Cred, error) { return Cred{UID: -1, PID: -1}, ErrUnsupported }

//go:build !linux

package job

// CanAdmitChildOnly: without /proc this system cannot tell a caller's
// ancestry, so Options.ChildOnly cannot be kept.
const CanAdmitChildOnly = false

func descendsFrom(int, int) bool { return false }

//go:build !linux

package job

import "syscall"

func ProtectProcess()                     {}
func childProcAttr() *syscall.SysProcAttr { return nil }
func lockThread() func()                  { return func() {} }

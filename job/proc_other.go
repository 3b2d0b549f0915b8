//go:build !linux

package job

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
func lockThread() func()                  { return func() {} }

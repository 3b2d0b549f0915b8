//go:build !linux

package main

import "syscall"

func protectProcess()                     {}
func childProcAttr() *syscall.SysProcAttr { return nil }
func lockThread() func()                  { return func() {} }

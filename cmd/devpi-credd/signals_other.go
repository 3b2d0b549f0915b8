//go:build !unix

package main

import "os"

func forwardedSignals() []os.Signal { return []os.Signal{os.Interrupt} }
func fromTerminal(os.Signal) bool   { return false }
func signalNumber(os.Signal) int    { return 2 }

//go:build !unix

package job

import "os"

func ForwardedSignals() []os.Signal { return []os.Signal{os.Interrupt} }
func fromTerminal(os.Signal) bool   { return false }
func signalNumber(os.Signal) int    { return 2 }

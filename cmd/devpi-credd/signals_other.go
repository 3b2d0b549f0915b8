//go:build !unix

package main

import "os"

// forwardedSignals are passed on to exec's child.
var forwardedSignals = []os.Signal{os.Interrupt}

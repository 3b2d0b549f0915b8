//go:build !unix

package main

import "os"

// Windows has no SIGHUP; edits of the config are still watched.
func notifyReload(chan<- os.Signal) {}

//go:build !unix

package daemon

// lockFile is a no-op where flock does not exist; the dial check in listen
// still refuses a socket that another daemon answers on.
func lockFile(string) (func(), error) { return func() {}, nil }

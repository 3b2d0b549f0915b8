//go:build !unix

package helper

// checkSocketDir: on Windows the socket lives in the user's profile.
func checkSocketDir(string) error { return nil }

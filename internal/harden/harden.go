package harden

import "runtime"

// Wipe overwrites b with zeros. Copies the runtime or a library made (a
// grown slice's old array, a string) are out of its reach.
func Wipe(b []byte) {
	clear(b)
	// The zeros are written even if b is not read again.
	runtime.KeepAlive(b)
}

//go:build !unix

package safefile

// NonBlock is an open flag; Windows has no FIFOs in the file system to
// block on.
const NonBlock = 0

//go:build !unix

package safefile

// NonBlock is an open flag; Windows has no FIFOs in the file system to
// block on.
const NonBlock = 0

// NoFollow is an open flag; on Windows the checks of a private file do
// not apply, and links are followed.
const NoFollow = 0

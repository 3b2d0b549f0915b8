// Package store keeps the long-lived devpi token of each server this machine
// talks to, where only its owner can read it. The file backend writes one
// token per file, privately and atomically, and refuses a file that others
// could read, as ssh does with keys. The sealed store keeps the tokens and
// the approval record encrypted with the person's passphrase, out of reach
// of the user's other processes; a system daemon keeps its approval record
// in a file of its own user's.
package store

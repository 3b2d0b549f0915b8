// Package store keeps the long-lived devpi token of each server this machine
// talks to, where only its owner can read it. The file backend writes one
// token per file, privately and atomically, and refuses a file that others
// could read, as ssh does with keys.
package store

// Package sysmode sets up system mode (docs/service.md): the daemon runs
// from the packages' system unit as its own user, devpi-credd, keeps the
// root tokens and the approval record in files that only that user
// reads, and serves the developer's uid on the shared socket. Setup is
// what 'devpi-credd setup-system' does as root, once for each user served.
package sysmode

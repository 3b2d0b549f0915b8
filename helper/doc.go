// Package helper is what helps the tools that ask for credentials: the
// client of devpi-credd's daemon (its local API on the Unix socket, with
// the checks of whom it reaches), the keyring command-line protocol that
// pip, uv and pdm run (Keyring, on readers and writers, so that it is
// tested without processes), and the keyring link they find on PATH. It
// knows the daemon only through package localapi.
package helper

// Package helper is the client side of devpi-credd's daemon: a client of
// the local API on its Unix socket, and (next) the adapters that answer
// pip, uv, twine and devpi-client in the keyring protocol. It knows the
// daemon only through package localapi.
package helper

// Package pybackend carries the Python keyring backend's source, so that
// devpi-credd exec can put it on a job's PYTHONPATH: twine and other users
// of the keyring library then find it without installing anything.
package pybackend

import _ "embed"

// Module is src/devpi_credd_keyring/__init__.py.
//
//go:embed src/devpi_credd_keyring/__init__.py
var Module []byte

// EntryPoints registers the module under keyring.backends.
const EntryPoints = "[keyring.backends]\ndevpi_credd = devpi_credd_keyring\n"

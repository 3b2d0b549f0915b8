// Package e2e holds the end-to-end tests: a real devpi-server with the
// devpi-tokens plugin on 127.0.0.1, and the real devpi-client, twine, pip
// and uv from the pinned virtualenvs that the Makefile creates, driven
// against devpi-credd's binary. They run with `make e2e` (build tag e2e).
package e2e

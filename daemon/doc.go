// Package daemon is devpi-credd's daemon: it holds each server's long-lived
// token and, per request on a local Unix socket from its own user, mints a
// derived token that expires in minutes and is scoped to the index, project
// and operation the URL asks for. It records every mint and refusal in an
// audit log (never the token), and reloads its config and tokens when their
// files change.
package daemon

// Package token is the devpi token: a macaroon that devpi-server's
// devpi-tokens plugin mints, in its "devpi-" + base64url text form. It parses,
// derives (attenuates) and inspects tokens offline, models the restrictions the
// server enforces, and mirrors the server's verification for tests.
//
// A Token never spells itself out by accident: String, fmt verbs and slog
// all redact it; only Reveal gives the text a server accepts.
package token

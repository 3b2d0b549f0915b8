// Package localapi is the one definition of the daemon's local HTTP API on
// its Unix socket: paths, request and answer bodies. The daemon serves it;
// the helper, the keyring adapters and the Python backend speak it.
package localapi

import "time"

// Paths of the API. Everything is JSON.
const (
	PathCredentials = "/v1/credentials" // POST CredentialsRequest -> Credentials
	PathStatus      = "/v1/status"      // GET -> Status
	PathLock        = "/v1/lock"        // POST -> Status: refuse every mint until unlocked
	PathUnlock      = "/v1/unlock"      // POST UnlockRequest -> Status
	// Approval (one-time codes for uploads): enrol in two steps, begin
	// then confirm with a first code; off needs a current code.
	PathApprovalBegin   = "/v1/approval/begin"   // POST ApprovalBegin -> ApprovalEnrollment
	PathApprovalConfirm = "/v1/approval/confirm" // POST ApprovalConfirm -> Status
	PathApprovalOff     = "/v1/approval/off"     // POST ApprovalOff -> Status
)

// SealTimeout bounds a request that opens or seals the sealed store
// (unlock, approval confirm and off), on both ends: scrypt at the highest
// work factor a store may ask for takes seconds, more on a busy machine.
const SealTimeout = 2 * time.Minute

// UnlockRequest opens a sealed store (Passphrase) or lifts a lock. A
// daemon without a sealed store takes an empty body too.
type UnlockRequest struct {
	Passphrase string `json:"passphrase,omitempty"`
}

// ApprovalBegin starts enrolling an authenticator. Code is a current
// code of the one enrolled now, when there is one: enrolling again needs
// it.
type ApprovalBegin struct {
	Code    string `json:"code,omitempty"`
	Account string `json:"account,omitempty"` // the name the authenticator app shows (default user@host)
}

// ApprovalEnrollment is a new secret, not yet in force: URI is the
// otpauth:// URI an authenticator app scans (it holds the secret). It is
// in force once confirmed with a code from it before Expires (Unix time).
type ApprovalEnrollment struct {
	ID      string `json:"id"`
	URI     string `json:"uri"`
	Expires int64  `json:"expires"`
}

// ApprovalConfirm puts an enrollment in force with a first code from
// the new authenticator. Passphrase re-seals a personal sealed store,
// where the secret and the policy are kept.
type ApprovalConfirm struct {
	ID         string `json:"id"`
	Code       string `json:"code"`
	Passphrase string `json:"passphrase,omitempty"`
}

// ApprovalOff turns approval off: Code is a current code; Passphrase
// re-seals a personal sealed store.
type ApprovalOff struct {
	Code       string `json:"code"`
	Passphrase string `json:"passphrase,omitempty"`
}

// ApprovalStatus is the approval policy in force and its throttle; never
// the secret.
type ApprovalStatus struct {
	// Enrolled: an authenticator is set up.
	Enrolled bool `json:"enrolled"`
	// Uploads: tokens that can upload (and sessions that can write) need
	// a fresh code in the request that mints them.
	Uploads   bool   `json:"uploads"`
	UploadTTL string `json:"upload_ttl,omitempty"`
	Account   string `json:"account,omitempty"`
	// Since is when the authenticator was enrolled (Unix time).
	Since int64 `json:"since,omitempty"`
	// Store is where the secret and the policy live: "sealed" (the sealed
	// store) or the path of the daemon's own file (system mode).
	Store string `json:"store,omitempty"`
	// Failures counts wrong codes in a row; from the 5th, every code is
	// refused until BlockedUntil (Unix time).
	Failures     int   `json:"failures,omitempty"`
	BlockedUntil int64 `json:"blocked_until,omitempty"`
}

// CredentialsRequest asks for a token for a URL (an index, upload or simple
// URL, a bare host[:port], or scheme://host[:port]).
type CredentialsRequest struct {
	URL string `json:"url"`
	// Username, when the caller already has one; it must be the token's.
	Username string `json:"username,omitempty"`
	// TTL such as "2m"; the daemon clamps it to its max_ttl (max_session_ttl
	// for a session).
	TTL string `json:"ttl,omitempty"`
	// Session asks for a token for a whole client session on the server
	// (devpi-client's login): limited by its expiry and the server's
	// configured restrictions only, not by the URL.
	Session bool `json:"session,omitempty"`
	// Code is a one-time code from the person's authenticator: with
	// approval on, a token that can upload (and a session that can write)
	// is minted only for a request that carries a fresh one. Never put in
	// argv or the environment: the helper reads it from the terminal, get
	// and exec from standard input.
	Code string `json:"code,omitempty"`
}

// Credentials is a freshly minted token and what it is for.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// Expires is a Unix time.
	Expires int64  `json:"expires"`
	Server  string `json:"server"`
	TokenID string `json:"token_id"`
	// Caveats added to the root token, for display; no secret.
	Caveats []string `json:"caveats"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Code is a stable word for programs: one of the Code constants.
	Code string `json:"code"`
}

// Error codes.
const (
	CodeNotFound    = "not_found"   // no configured server for the URL
	CodeRefused     = "refused"     // the root token cannot do what is asked
	CodeBadRequest  = "bad_request" // malformed request
	CodeForbidden   = "forbidden"   // the caller's uid is not allowed, or not this (sessions, lock)
	CodeUnavailable = "unavailable" // no usable root token, the server or the audit log cannot be reached
	CodeLocked      = "locked"      // the daemon is locked
	CodeBudget      = "budget"      // the caller is over its mint budget
	// CodeSealed: the root tokens are in a sealed store not opened yet
	// ('devpi-credd unlock' asks for its passphrase).
	CodeSealed = "sealed"
	// CodeApprovalRequired: the token asked for can upload, and approval
	// is on: ask again with a one-time code (the helper prompts on the
	// terminal for it).
	CodeApprovalRequired = "approval_required"
	// CodeApprovalRefused: the code is wrong or spent, or codes are
	// refused for a while after too many wrong ones.
	CodeApprovalRefused = "approval_refused"
)

// Status describes the running daemon.
type Status struct {
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Config  string    `json:"config"`
	Socket  string    `json:"socket"`
	// SharedSocket is where allow_uids connect, when set.
	SharedSocket string `json:"shared_socket,omitempty"`
	AuditLog     string `json:"audit_log"`
	DefaultTTL   string `json:"default_ttl"`
	MaxTTL       string `json:"max_ttl"`
	MaxSession   string `json:"max_session_ttl"`
	Locked       bool   `json:"locked"`
	Minted       int64  `json:"minted"`
	Refused      int64  `json:"refused"`
	// Missed counts lookups for services that are not ours (other hosts,
	// poetry's and pdm's repository names): not refusals.
	Missed int64 `json:"missed"`
	// Dropped counts connections closed unanswered, over the local
	// sockets' caps on connections per uid.
	Dropped int64          `json:"dropped"`
	Servers []ServerStatus `json:"servers"`
	// ConfigError is the last reload's error; the previous config serves.
	ConfigError string `json:"config_error,omitempty"`
	// AuditError is why the audit log cannot be written: until it can, no
	// token is handed out.
	AuditError string `json:"audit_error,omitempty"`
	// Exchange is where the trusted-publishing exchange listens, and
	// Exchanged how many tokens it handed out.
	Exchange  string `json:"exchange,omitempty"`
	Exchanged int64  `json:"exchanged,omitempty"`
	// ExchangeDropped counts the exchange's connections closed
	// unanswered, over its caps per address and in total.
	ExchangeDropped int64 `json:"exchange_dropped,omitempty"`
	// Sealed: the root tokens and the approval policy live in a sealed
	// store (personal mode); Opened: it is open in the daemon's memory.
	Sealed bool `json:"sealed,omitempty"`
	Opened bool `json:"opened,omitempty"`
	// Approval is the approval policy in force (absent: none).
	Approval *ApprovalStatus `json:"approval,omitempty"`
	// Hardening lists what the daemon could not do to protect its memory
	// from its own user (undumpable, no core files, secrets locked out of
	// swap); empty when all holds.
	Hardening []string `json:"hardening,omitempty"`
}

// ServerStatus is one configured server and its root token.
type ServerStatus struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Store   string `json:"store"` // token file path, or "keychain"
	User    string `json:"user,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	// Expires is the root token's Unix expiry; 0 for never.
	Expires int64  `json:"expires,omitempty"`
	Minted  int64  `json:"minted"`
	Error   string `json:"error,omitempty"`
	// ReadScope is "index" or "server" (see the config's read_scope).
	ReadScope string `json:"read_scope"`
}

// Package approval decides whether a request carries the person's
// approval: a one-time code (TOTP, RFC 6238) from their authenticator app,
// valid now and never used before. The daemon asks it before minting any
// token that can upload; the secret and the policy it checks against live
// in the daemon's protected store (sealed, or the daemon's own files in
// system mode), never in the user's config.
package approval

import (
	"encoding/json"
	"fmt"
	"time"
)

// Defaults and bounds of the policy.
const (
	// DefaultUploadTTL is how long an approved token lives: devpi uploads
	// go to the index URL, so the token cannot be held to one project,
	// and only its short life bounds what a thief could do with it.
	DefaultUploadTTL = 2 * time.Minute
	MaxUploadTTL     = 15 * time.Minute
)

// Policy is what needs a code.
type Policy struct {
	// Uploads: a token that can upload (and a session that can write) is
	// minted only for a request that carries a fresh code.
	Uploads bool `json:"uploads"`
	// UploadTTL is the life of an approved token (default
	// DefaultUploadTTL, at most MaxUploadTTL).
	UploadTTL Duration `json:"upload_ttl,omitempty"`
}

// TTL is the life of an approved token under p.
func (p Policy) TTL() time.Duration {
	if p.UploadTTL <= 0 {
		return DefaultUploadTTL
	}
	return min(time.Duration(p.UploadTTL), MaxUploadTTL)
}

// Record is the enrolled authenticator and the policy: what the protected
// store keeps. A Record with no Secret and Policy.Uploads set refuses
// every upload until someone enrols (system mode's start).
type Record struct {
	// Secret is the TOTP key (20 random bytes; base64 in JSON).
	Secret []byte `json:"secret,omitempty"`
	// Account is the name the authenticator app shows.
	Account string    `json:"account,omitempty"`
	Since   time.Time `json:"since,omitzero"` // when it was enrolled
	Policy  Policy    `json:"policy"`
}

// Enrolled reports whether an authenticator is set up.
func (r *Record) Enrolled() bool { return r != nil && len(r.Secret) > 0 }

// Wipe overwrites the secret in place: as far as Go permits, it does not
// outlive its use (copies the runtime made are out of reach).
func (r *Record) Wipe() {
	if r == nil {
		return
	}
	clear(r.Secret)
	r.Secret = nil
}

// Duration is a time.Duration written as "2m" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration such as \"2m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as \"2m\"", s)
	}
	*d = Duration(v)
	return nil
}

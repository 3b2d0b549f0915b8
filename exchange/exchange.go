// Package exchange is trusted publishing for devpi: a CI job trades the
// identity token its CI system gives it (OIDC: GitHub Actions, GitLab CI)
// for a devpi token that lives minutes and may do what the matching
// publisher allows, with no stored secret. It speaks PyPI's interface
// (GET /_/oidc/audience, POST /_/oidc/mint-token), so the tooling that
// speaks to PyPI can speak to it; the server side verifies (Verifier),
// remembers used tokens (Replay) and matches publishers, and leaves the
// minting to its Minter (the daemon); the client side (Client) is what
// devpi-credd exec --oidc runs in the job.
package exchange

import (
	"strings"

	"github.com/devpi-credd/devpi-credd/internal/msg"
)

// Paths of PyPI's interface.
const (
	PathAudience  = "/_/oidc/audience"
	PathMintToken = "/_/oidc/mint-token"
	// PathMintTokenGitHub is where older releases of the PyPA action
	// post (from when PyPI trusted GitHub alone); it answers as
	// PathMintToken.
	PathMintTokenGitHub = "/_/oidc/github/mint-token"
	// PathBurnToken is where uv reports, after publishing, the token it
	// is done with.
	PathBurnToken = "/_/oidc/burn-token"
)

// Error codes of a refusal, one per failed check (PyPI's codes where PyPI
// has one: invalid-payload, not-enabled, invalid-token, invalid-publisher,
// invalid-reuse-token).
const (
	CodeInvalidPayload   = "invalid-payload"     // the request is not {"token": "..."}
	CodeNotEnabled       = "not-enabled"         // [exchange] is gone from the config
	CodeInvalidToken     = "invalid-token"       // not a JWT, a refused alg
	CodeInvalidSignature = "invalid-signature"   // an unknown key, a bad signature
	CodeUnknownIssuer    = "unknown-issuer"      // no publisher trusts the issuer
	CodeInvalidAudience  = "invalid-audience"    // issued for another audience, or several
	CodeExpired          = "expired-token"       // past exp
	CodeNotYetValid      = "not-yet-valid"       // before nbf, or iat in the future
	CodeReused           = "invalid-reuse-token" // this token was exchanged before
	CodeInvalidPublisher = "invalid-publisher"   // no publisher's claims match
	CodeBudget           = "budget-exceeded"     // the publisher's exchanges a minute
	CodeUnavailable      = "unavailable"         // cannot verify or mint now
	// CodeUnknownToken is for the audit log only: burn-token of a devpi
	// token this exchange did not mint (the caller gets 202 all the same).
	CodeUnknownToken = "unknown-token"
)

// Problem is one failed check.
type Problem struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// Refusal is PyPI's error body: a message and one problem per failed
// check. Status is the HTTP status (422 as PyPI, 400 for unreadable
// input, 429 over budget, 503 when it cannot verify or mint).
type Refusal struct {
	Status  int       `json:"-"`
	Message string    `json:"message"`
	Errors  []Problem `json:"errors"`
	// Detail is for the operator (the audit log), not the caller: what a
	// fetch failed with, which claims did not match.
	Detail string `json:"-"`
}

func refusal(status int, code, description string) *Refusal {
	r := &Refusal{}
	r.add(status, code, description)
	return r
}

func (r *Refusal) add(status int, code, description string) {
	if r.Status == 0 {
		r.Status = status
	}
	r.Errors = append(r.Errors, Problem{Code: code, Description: description})
	r.Message = "Token request failed: " + r.reasons()
}

func (r *Refusal) reasons() string {
	var ds []string
	for _, p := range r.Errors {
		ds = append(ds, p.Description)
	}
	return strings.Join(ds, "; ")
}

// Error is the message and the codes, on one line.
func (r *Refusal) Error() string {
	if len(r.Errors) == 0 {
		return msg.OneLine(r.Message)
	}
	return msg.OneLine(r.Message) + " (" + strings.Join(r.Codes(), ", ") + ")"
}

// Codes lists the refusal's codes, for the audit line.
func (r *Refusal) Codes() []string {
	var cs []string
	for _, p := range r.Errors {
		cs = append(cs, p.Code)
	}
	return cs
}

// Minted is a successful exchange's answer (PyPI's, plus who and until
// when).
type Minted struct {
	Success  bool   `json:"success"`
	Token    string `json:"token"`
	Username string `json:"username"`
	Expires  int64  `json:"expires"`
}

package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Request is what devpi-server knows about a request when it checks a
// token: who it claims to be and what it touches. Empty fields do not apply.
type Request struct {
	Now time.Time
	// User is the user name sent beside the token ("" for Bearer or ":token").
	User string
	// Index is the request's "USER/INDEX", if it addresses one.
	Index string
	// Project is the project in the URL, or the "name" field of an upload.
	Project string
	// Permission is what the view needs, such as "upload" or "pkg_read".
	Permission string
}

// ErrDenied is wrapped by every refusal from Verify.
var ErrDenied = errors.New("token refused")

func denied(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDenied, fmt.Sprintf(format, args...))
}

// Verify checks the token as devpi-tokens' server plugin does: user name,
// signature against rootKey, every caveat against req, then the permission
// that the allowed caveats leave. The messages follow the server's. Only a
// holder of the root key can verify, so this serves tests and fakes.
func (t *Token) Verify(rootKey []byte, req Request) error {
	if req.User != "" && req.User != t.user {
		return denied("Token doesn't match user name")
	}
	// Signature first: macaroon's Verify would run our checker on caveats
	// of a forged token before it notices.
	conds, err := t.m.VerifySignature(rootKey, nil)
	if err != nil {
		return denied("signature does not match")
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	now := req.Now.Unix()
	var allowed []string
	restricted := false
	for _, raw := range conds {
		c := ParseCaveat(raw)
		if c.Problem != "" {
			return denied("caveat %q: %s", raw, c.Problem)
		}
		if c.NotBefore != nil && now < c.NotBefore.Unix() {
			return denied("Token not valid before %d (%s)", c.NotBefore.Unix(), c.NotBefore.UTC())
		}
		if c.Expires != nil && now >= c.Expires.Unix() {
			return denied("Token expired at %d (%s)", c.Expires.Unix(), c.Expires.UTC())
		}
		switch {
		case c.Key == KeyIndexes:
			if req.Index != "" && !slices.Contains(c.List, req.Index) {
				return denied("Token denied access to index '%s'", req.Index)
			}
		case c.Key == KeyProjects || c.Kind == KindPyPIProjects || c.Kind == KindPyPIPerms && !c.UserScope:
			if req.Index != "" && req.Project != "" {
				p := NormalizeProject(req.Project)
				if !slices.ContainsFunc(c.List, func(x string) bool { return NormalizeProject(x) == p }) {
					return denied("Token denied access to project '%s'", p)
				}
			}
		case c.Key == KeyAllowed:
			if !restricted {
				allowed, restricted = slices.Clone(c.List), true
			} else {
				allowed = slices.DeleteFunc(allowed, func(p string) bool { return !slices.Contains(c.List, p) })
			}
		}
	}
	if p := req.Permission; p != "" {
		if strings.HasPrefix(p, "user_") {
			return denied("a token never has permission %q", p)
		}
		if restricted && !slices.Contains(allowed, p) {
			return denied("permission %q is not allowed by this token", p)
		}
	}
	return nil
}

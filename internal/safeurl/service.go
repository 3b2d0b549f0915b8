package safeurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseService reads what a caller names a service: a URL, a bare
// host[:port] (pip's second keyring lookup) or scheme://host[:port]. A bare
// host comes back without a scheme. User info is taken off the raw text
// first, as HTTP clients read it (a password never reaches a log, an error
// or the parser; an '@' after the host is refused, see WithoutUserinfo),
// and the path comes back decoded and cleaned (see CleanPath): the one form
// that server matching and scoping both use.
func ParseService(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("no url given")
	}
	bare, err := WithoutUserinfo(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", Redact(s), err)
	}
	s = bare
	if !strings.Contains(s, "://") {
		u, err := url.Parse("//" + s)
		if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q is neither a URL nor host[:port]", Redact(s))
		}
		return u, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", Redact(s))
	}
	if u.Path, err = CleanPath(u.Path); err != nil {
		return nil, fmt.Errorf("%q: %w", Redact(s), err)
	}
	u.User, u.RawPath, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", "", false, "", ""
	return u, nil
}

// Match returns the index of the root URL that is the longest prefix of u
// (scheme, host and path), as devpi-client matches its sessions. It
// compares decoded paths, the form the server routes on and the form the
// daemon scopes tokens by: "/%64evpi/" is "/devpi/" to both. A u without
// a scheme (a bare host[:port], pip's and uv's fallback lookup) matches
// only a plain-http root: it says nothing of the scheme the tool will use,
// and a token of an https server must never go out over http.
func Match(roots []*url.URL, u *url.URL) (int, bool) {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	p := u.Path
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	best := -1
	for i, r := range roots {
		if !strings.EqualFold(r.Scheme, scheme) || !strings.EqualFold(r.Host, u.Host) || !strings.HasPrefix(p, r.Path) {
			continue
		}
		if best < 0 || len(r.Path) > len(roots[best].Path) {
			best = i
		}
	}
	return best, best >= 0
}

// ParseRoot checks and normalises a server root URL: http or https, a
// host, no credentials, no query, a cleaned path with a trailing slash.
// Errors quote the URL redacted.
func ParseRoot(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	shown := Redact(raw)
	if _, err := WithoutUserinfo(raw); err != nil {
		return nil, fmt.Errorf("server URL %q: %w", shown, err)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not an http(s) URL", shown)
	}
	if u.User != nil {
		return nil, fmt.Errorf("server URL %q must not hold credentials", shown)
	}
	u.RawQuery, u.Fragment = "", ""
	if u.Path, err = CleanPath(u.Path + "/"); err != nil {
		return nil, fmt.Errorf("server URL %q: %w", shown, err)
	}
	u.RawPath = ""
	return u, nil
}

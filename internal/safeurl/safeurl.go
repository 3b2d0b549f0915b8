// Package safeurl handles URLs that callers hand to devpi-credd, which may
// carry a password: it strips user info before anything else looks at the
// text, redacts what may be logged, and brings a path to the one form that
// both server matching and scoping use.
package safeurl

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLogged bounds a URL as it goes into a log line, an audit line or an
// error: a caller must not be able to write 64 KiB per request.
const MaxLogged = 256

// splitScheme splits "scheme://" off s when s starts with one (a letter,
// then letters, digits, '+', '-' or '.'); a "://" inside a password is
// not a scheme.
func splitScheme(s string) (prefix, rest string) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", s
	}
	for j, r := range s[:i] {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (j == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return "", s
		}
	}
	return s[:i+3], s[i+3:]
}

// StripUserinfo removes everything that may be "user:password@" from raw
// text, for logs and messages: all up to the last '@' after the scheme. A
// password may hold '#', '?', '/' or '@'; cutting too much of a URL that
// has an '@' in its path costs a log line some detail, never a secret.
func StripUserinfo(s string) string {
	prefix, rest := splitScheme(s)
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		return prefix + rest[j+1:]
	}
	return s
}

// ErrAtAfterHost is returned for a URL with an '@' after its host: either
// a password holding '/', '?' or '#' that was not percent-encoded, or a
// path or query with an '@' in it. Which one cannot be told, and guessing
// wrong would scope a token for one host and hand it to a client that
// connects to another.
var ErrAtAfterHost = errors.New("it has an '@' after the host (percent-encode a password's '/', '?', '#' and '@')")

// ErrOddCharacter is returned for a URL with a backslash, white space or a
// control character.
var ErrOddCharacter = errors.New("it has a backslash, white space or a control character")

// WithoutUserinfo removes user info from raw URL text before it is parsed,
// the way HTTP clients read it: the authority ends at the first '/', '?'
// or '#' after the scheme, and the host follows its last '@'. An '@' after
// the authority is ErrAtAfterHost.
func WithoutUserinfo(s string) (string, error) {
	// Clients disagree on these (WHATWG parsers read '\\' as '/' and drop
	// tabs): the host one reads could be another's user info.
	if strings.ContainsFunc(s, func(r rune) bool { return r == '\\' || r <= ' ' || r == 0x7f }) {
		return "", ErrOddCharacter
	}
	prefix, rest := splitScheme(s)
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if strings.Contains(rest[end:], "@") {
		return "", ErrAtAfterHost
	}
	auth := rest[:end]
	if j := strings.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:]
	}
	return prefix + auth + rest[end:], nil
}

// Redact is s as it may be logged: no user info, no query or fragment, at
// most MaxLogged bytes.
func Redact(s string) string {
	s = StripUserinfo(s)
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?..."
	}
	return Cap(s, MaxLogged)
}

// Cap cuts s to at most n bytes (at a rune boundary) and says how much
// was left out.
func Cap(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}

// ErrDotSegment is returned for a path with a "." or ".." segment, which
// a server or proxy may resolve differently from us.
var ErrDotSegment = errors.New("the path has a '.' or '..' segment")

// CleanPath brings a decoded URL path to the form servers route on: no
// empty segments (nginx merges slashes), a leading slash, a trailing one
// kept. Dot segments are refused rather than resolved.
func CleanPath(p string) (string, error) {
	var segs []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
		case ".", "..":
			return "", ErrDotSegment
		default:
			segs = append(segs, s)
		}
	}
	out := "/" + strings.Join(segs, "/")
	if len(segs) > 0 && strings.HasSuffix(p, "/") {
		out += "/"
	}
	return out, nil
}

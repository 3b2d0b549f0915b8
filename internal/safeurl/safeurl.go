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

// StripUserinfo removes "user:password@" from raw text, with or without a
// scheme, before any parsing: a password may hold '#', '?', '/' or '@',
// which a URL parser reads as the end of the authority (and a password of
// digits after a colon as a port). Everything up to the last '@' after the
// scheme goes; devpi URLs have no '@' in their paths.
func StripUserinfo(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		return prefix + rest[j+1:]
	}
	return s
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

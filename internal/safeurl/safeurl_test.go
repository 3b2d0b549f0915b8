package safeurl

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a/":                          "http://h/a/",
		"http://alice:S3cret#x@h/a/":           "http://h/a/",
		"http://alice:12345#678@h/":            "http://h/",
		"http://alice:pa?ss@h/a/?q=1":          "http://h/a/?...",
		"http://alice:p@ss@h/a/":               "http://h/a/",
		"http://alice:pa/ss@h/a/":              "http://h/a/",
		"alice:pw@h":                           "h",
		"http://h/a/?token=secret#frag":        "http://h/a/?...",
		"https://h/x#secret":                   "https://h/x?...",
		"http://h/" + strings.Repeat("é", 300): "http://h/" + strings.Repeat("é", 123) + "...(609 bytes)",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%.40q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":              "/",
		"/":             "/",
		"//devpi//a/":   "/devpi/a/",
		"/devpi/a":      "/devpi/a",
		"devpi/a/":      "/devpi/a/",
		"/a/b/+simple/": "/a/b/+simple/",
	} {
		if got, err := CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/a/../b/", "/./a", "/a/.."} {
		if _, err := CleanPath(bad); err == nil {
			t.Errorf("CleanPath(%q) accepted a dot segment", bad)
		}
	}
}

func TestWithoutUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"http://alice:pw@h/a/":   "http://h/a/",
		"http://alice:p@ss@h/a/": "http://h/a/",
		"alice:pw@h:3141":        "h:3141",
		"https://h/a/?q=1#f":     "https://h/a/?q=1#f",
	} {
		if got, err := WithoutUserinfo(in); err != nil || got != want {
			t.Errorf("WithoutUserinfo(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// An '@' after the host, or characters clients read differently:
	// refused, never read as user info before another host.
	for _, bad := range []string{"http://evil/x@h/a/", "http://evil/?q=@h/", "http://evil/#@h/", "evil/@h",
		"http://alice:pa/ss@h/", "http://alice:S3#x@h/", "http://evil\\@h/", "http://evil\t@h/", "http://e vil@h/"} {
		if got, err := WithoutUserinfo(bad); err == nil {
			t.Errorf("WithoutUserinfo(%q) = %q, want an error", bad, got)
		}
	}
}

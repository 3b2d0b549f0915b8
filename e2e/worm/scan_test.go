//go:build linux

package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/token"
)

// The worm finds a token however it lies in a file or in memory: with
// its prefix or without, in standard base64, as binary, and with other
// base64 text right before or after it (strings in memory have no
// terminator). Nothing else counts as one.
func TestScanFindsTokens(t *testing.T) {
	root, err := token.New([]byte("key"), "alice-dev", "abcd2345")
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := token.Allowed("pkg_read")
	read, err := root.Derive(exp)
	if err != nil {
		t.Fatal(err)
	}
	text := read.Reveal()
	bare := strings.TrimPrefix(text, token.Prefix)
	raw, err := base64.RawURLEncoding.DecodeString(bare)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"prefixed in a config":       "[global]\nindex-url = https://alice-dev:" + text + "@host/simple/\n",
		"bare in an environment":     "A=1\x00TWINE_PASSWORD=" + bare + "\x00B=2\x00",
		"standard base64":            `{"password": "` + base64.RawStdEncoding.EncodeToString(raw) + `"}`,
		"binary in memory":           "\x00\x07junk" + string(raw) + "\x01\x02more junk",
		"base64 run after it":        "xx" + text + "QUJDREVGR0hJSktMTU5PUA",
		"base64 run before it":       bare[:3] + "XQUJDREVGR0hJSktMTU5PUA" + text + "\x00",
		"two tokens one after other": text + bare,
	} {
		c := newCollector()
		if n := c.scan([]byte(data), name); n == 0 || len(c.order) != 1 {
			t.Errorf("%s: saw %d, found %d tokens, want the one", name, n, len(c.order))
			continue
		}
		if f := c.found[c.order[0]]; f.Fingerprint != fingerprint(read) || f.User != "alice-dev" || f.Sources[0] != name {
			t.Errorf("%s: found %+v", name, f)
		}
	}
	for _, data := range []string{"", "AgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "devpi-STOLENBYMALLORY", bare[:len(bare)/2]} {
		if c := newCollector(); c.scan([]byte(data), "x") != 0 {
			t.Errorf("%q: a token found in it", data)
		}
	}
}

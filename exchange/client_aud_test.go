//go:build unix

package exchange

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A token taken from a file, a variable or a command is not sent unless
// its aud (read unverified) is exactly the audience the job chose: a
// token for another audience (AWS's, PyPI's) handed to this exchange is
// refused before it leaves the job, with one line naming both audiences
// and never the token.
func TestIDTokenOfAnotherAudienceIsNotSent(t *testing.T) {
	long := strings.Repeat("x", 500)
	for _, tt := range []struct {
		name string
		aud  any
		want string // in the error; "" for a token that is sent
	}{
		{"the audience", "devpi.example.com", ""},
		{"one audience in a list", []string{"devpi.example.com"}, `["devpi.example.com"], not exactly`},
		{"several", []string{"devpi.example.com", "sts.amazonaws.com"}, "not exactly"},
		{"AWS's", "sts.amazonaws.com", `"sts.amazonaws.com"`},
		{"none", nil, "names no audience"},
		{"a number", 7, "not exactly"},
		{"a long one", long, "xxx...(500 bytes)"},
	} {
		claims := map[string]any{"iss": "https://ci.example"}
		if tt.aud != nil {
			claims["aud"] = tt.aud
		}
		jwt := unsignedJWT(claims)
		file := filepath.Join(t.TempDir(), "id.jwt")
		if err := os.WriteFile(file, []byte(jwt+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, req := range []IDTokenRequest{
			{Audience: "devpi.example.com", File: file},
			{Audience: "devpi.example.com", Command: "cat " + file},
			{Audience: "devpi.example.com"},
		} {
			var posted atomic.Int64
			env := map[string]string{IDTokenEnv: jwt}
			c := &Client{Base: fakeExchange(t, "devpi.example.com", &posted), HTTP: http.DefaultClient, Getenv: func(k string) string { return env[k] },
				Environ: []string{"PATH=/usr/bin:/bin"}}
			got, _, err := c.IDToken(context.Background(), req)
			switch {
			case tt.want == "" && (err != nil || got != jwt):
				t.Errorf("%s, %+v: %v", tt.name, req, err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrBadIDToken) && !(req.Command != "" && errors.Is(err, ErrIDTokenCommand)) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"devpi.example.com"`)):
				t.Errorf("%s, %+v: %v, want an error with %q", tt.name, req, err, tt.want)
			case err != nil && (strings.Contains(err.Error(), jwt) || strings.Contains(err.Error(), "\n") || len(err.Error()) > 400):
				t.Errorf("%s: the error holds the token, or is long: %v", tt.name, err)
			}
		}
	}
	// Not a JWT at all: refused before sending, as one with no audience.
	c := &Client{Base: fakeExchange(t, "devpi.example.com", new(atomic.Int64)), HTTP: http.DefaultClient, Getenv: func(k string) string {
		if k == IDTokenEnv {
			return "not.a.jwt!"
		}
		return ""
	}}
	if _, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "devpi.example.com"}); !errors.Is(err, ErrBadIDToken) {
		t.Errorf("a token that is not a JWT: %v", err)
	}
}

//go:build unix

package exchange

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// commandClient is a client of an exchange naming devpi.example.com in a
// job whose environment holds identity tokens in both variables.
func commandClient(t *testing.T) (*Client, *bytes.Buffer, *fakeTokenService) {
	ts := newFakeTokenService(t)
	var posted atomic.Int64
	env := ts.env()
	stderr := &bytes.Buffer{}
	c := &Client{Base: fakeExchange(t, "devpi.example.com", &posted), HTTP: ts.Client(), Getenv: func(k string) string { return env[k] },
		Environ: []string{"PATH=/usr/bin:/bin", IDTokenEnv + "=GL.JWT.OURS", "DEVPI_EXAMPLE_COM_ID_TOKEN=GL.JWT.AUD", AudienceVar + "=not-this"},
		Stderr:  stderr}
	return c, stderr, ts
}

// --id-token-command: a CI system's own tool prints the token, told the
// audience in $DEVPI_CREDD_AUDIENCE; it comes before every variable, and
// sees none of those that hold identity tokens.
func TestIDTokenCommand(t *testing.T) {
	c, stderr, ts := commandClient(t)
	cmd := `test -z "${DEVPI_CREDD_ID_TOKEN-}${DEVPI_EXAMPLE_COM_ID_TOKEN-}" || exit 9; echo noise >&2; printf '  e30.%s.c2ln\n\n' "$(printf '{"aud":"%s"}' "$DEVPI_CREDD_AUDIENCE" | base64 | tr -d '\n=' | tr '+/' '-_')"`
	jwt, source, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "devpi.example.com", Command: cmd})
	if err != nil || jwt != unsignedJWTOf(`{}`, `{"aud":"devpi.example.com"}`) || source != "--id-token-command" {
		t.Fatalf("%q %q %v", jwt, source, err)
	}
	if stderr.String() != "noise\n" {
		t.Errorf("the command's stderr: %q", stderr)
	}
	if n := ts.calls.Load(); n != 0 {
		t.Errorf("the token service was asked %d times", n)
	}
}

// An exchange that names another audience: the command never runs.
func TestIDTokenCommandNotRunForAnotherAudience(t *testing.T) {
	c, _, _ := commandClient(t)
	marker := filepath.Join(t.TempDir(), "ran")
	_, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "sts.amazonaws.com", Command: "touch " + marker + "; echo a.b.c"})
	if !errors.Is(err, ErrAudience) {
		t.Errorf("another audience: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

func TestIDTokenCommandFails(t *testing.T) {
	for _, tt := range []struct{ name, cmd, want string }{
		{"non-zero exit", "echo oops >&2; echo a.b.c; exit 3", "the identity token command exited with status 3"},
		{"nothing printed", "true", "the identity token from --id-token-command is empty"},
		{"more than the token", "echo 'warning: old agent'; echo a.b.c", "the identity token from --id-token-command is more than one word"},
		{"too much", "head -c 70000 /dev/zero | tr '\\0' a", "the identity token command printed more than 64 KiB"},
		{"not found", "no-such-ci-tool-here", "the identity token command exited with status 127"},
		{"killed", "kill -KILL $$", "the identity token command was killed (signal: killed)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := commandClient(t)
			_, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "devpi.example.com", Command: tt.cmd})
			if !errors.Is(err, ErrIDTokenCommand) || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v, want %q", err, tt.want)
			}
		})
	}
}

// A command that hangs is killed at the timeout, and says so.
func TestIDTokenCommandTimeout(t *testing.T) {
	c, _, _ := commandClient(t)
	c.CommandTimeout = 200 * time.Millisecond
	start := time.Now()
	_, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "devpi.example.com", Command: "exec sleep 30"})
	if !errors.Is(err, ErrIDTokenCommand) || err.Error() != "the identity token command did not finish within 200ms" {
		t.Errorf("a hanging command: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("it took %s", d)
	}
}

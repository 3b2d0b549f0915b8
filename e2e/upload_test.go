//go:build e2e

package e2e

import (
	"html"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/token"
)

// twineUpload uploads a wheel to USER/INDEX with the token in twine's
// environment variables, never on its command line.
func (u *user) twineUpload(t *testing.T, index string, tok *token.Token, wheel string) result {
	t.Helper()
	// --verbose shows the server's answer; a wide terminal keeps rich from
	// folding it.
	return u.runEnv(t, []string{"TWINE_USERNAME=" + tok.User(), "TWINE_PASSWORD=" + tok.Reveal(), "COLUMNS=1000", "NO_COLOR=1"}, "",
		bed.py("client", "twine"), "upload", "--non-interactive", "--disable-progress-bar", "--verbose",
		"--repository-url", bed.url+index+"/", wheel)
}

func mustUpload(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("twine upload failed: %s", r)
	}
}

// mustRefuse wants a 403 from the server that gives the reason expected.
func mustRefuse(t *testing.T, r result, why string) {
	t.Helper()
	// devpi-server answers JSON, or with devpi-web an HTML page: compare
	// the text either way.
	out := html.UnescapeString(r.stdout + r.stderr)
	if r.code == 0 || !strings.Contains(out, "403 Forbidden") || !strings.Contains(out, why) {
		t.Fatalf("twine upload: want 403 with %q, got %s", why, r)
	}
}

// TestTwineUploadDerived: a token derived by devpi-credd authenticates a real
// twine upload to the index it names, and the server refuses it for another
// index, another project, after it expires and after its root is deleted.
func TestTwineUploadDerived(t *testing.T) {
	u := newUser(t)
	u.login(t)
	dev := u.newIndex(t, "dev")
	prod := u.newIndex(t, "prod")
	rootFile := filepath.Join(u.home, "root.token")
	u.credd(t, 0, "token", "create", "-o", rootFile)
	root := parseToken(t, readFile(t, rootFile))

	derive := func(args ...string) *token.Token {
		return parseToken(t, u.credd(t, 0, append([]string{"token", "derive", "-f", rootFile}, args...)...).stdout)
	}
	scoped := derive("-e", "10min", "-i", dev, "-p", "pkg-a", "-a", "upload")

	mustUpload(t, u.twineUpload(t, dev, scoped, u.wheel(t, "pkg-a", "1.0")))
	var info struct {
		Result map[string]any `json:"result"`
	}
	if err := bed.api("GET", dev+"/pkg-a", "-", nil, &info); err != nil || info.Result["1.0"] == nil {
		t.Fatalf("pkg-a 1.0 is not on %s: %v %v", dev, err, info.Result)
	}

	mustRefuse(t, u.twineUpload(t, prod, scoped, u.wheel(t, "pkg-a", "1.1")), "Token denied access to index '"+prod+"'")
	mustRefuse(t, u.twineUpload(t, dev, scoped, u.wheel(t, "pkg-b", "1.0")), "Token denied access to project 'pkg-b'")
	readOnly := derive("-e", "10min", "-a", "pkg_read")
	mustRefuse(t, u.twineUpload(t, dev, readOnly, u.wheel(t, "pkg-a", "1.2")), "no permission to submit")
	expired := derive("-e", "-1 min", "-i", dev)
	mustRefuse(t, u.twineUpload(t, dev, expired, u.wheel(t, "pkg-a", "1.3")), "Token expired at")

	// The same scope, unexpired, still works: the expiry made the difference.
	mustUpload(t, u.twineUpload(t, dev, scoped, u.wheel(t, "pkg-a", "1.4")))

	u.credd(t, 0, "token", "delete", root.ID())
	mustRefuse(t, u.twineUpload(t, dev, scoped, u.wheel(t, "pkg-a", "1.5")), "The token id "+root.ID()+" doesn't exist")
}

// TestBadInputServer: against the real server, failures are one line on
// stderr with a documented exit code and no token in them.
func TestBadInputServer(t *testing.T) {
	u := newUser(t)
	r := u.creddStdin(t, 1, "wrong password\n", "login", "--url", bed.url, u.name, "--password-stdin")
	if !strings.Contains(r.stderr, "401 Unauthorized: user '"+u.name+"' could not be authenticated") {
		t.Errorf("wrong password: %s", r)
	}
	if strings.Contains(r.stderr, "wrong password") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("wrong password output: %s", r)
	}
	// A token signed by someone else: the server refuses it, we say so.
	forged, err := token.New([]byte("not the server's key"), u.name, "abcd2345")
	if err != nil {
		t.Fatal(err)
	}
	r = u.credd(t, 1, "token", "login", "--url", bed.url, "-f", u.writeFile(t, "forged", forged.Reveal()))
	if !strings.Contains(r.stderr, "403") {
		t.Errorf("forged token: %s", r)
	}
	noSecret(t, r, forged)
	// A malformed token never reaches the server.
	r = u.credd(t, 2, "token", "login", "--url", bed.url, "-f", u.writeFile(t, "bad", "devpi-AgEA!!"))
	if !strings.Contains(r.stderr, "invalid token") {
		t.Errorf("malformed token: %s", r)
	}
	// An unreachable server.
	r = u.creddStdin(t, 3, u.password+"\n", "login", "--url", "http://127.0.0.1:9/", u.name, "--password-stdin")
	if !strings.Contains(r.stderr, "cannot reach devpi-server") {
		t.Errorf("unreachable: %s", r)
	}
}

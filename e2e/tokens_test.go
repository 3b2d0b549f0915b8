//go:build e2e

package e2e

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/token"
)

// The scenarios of devpi-tokens' own functional tests
// (src/devpi_tokens/tests/test_functional.py), done with devpi-credd.

func parseToken(t *testing.T, text string) *token.Token {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	tok, err := token.Parse(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("parsing %q: %v", text, err)
	}
	return tok
}

func keys(tok *token.Token) []string {
	var out []string
	for _, c := range tok.Caveats() {
		k, _, _ := strings.Cut(c, "=")
		out = append(out, k)
	}
	return out
}

func hasLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i := range lines {
		if i+len(want) > len(lines) {
			break
		}
		ok := true
		for j, w := range want {
			if m, _ := filepath.Match(w, lines[i+j]); !m {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf("output lacks the lines %q:\n%s", want, out)
}

func TestTokenCreate(t *testing.T) {
	u := newUser(t)
	u.login(t)
	tok := parseToken(t, u.credd(t, 0, "token", "create").stdout)
	if tok.User() != u.name || !slices.Equal(keys(tok), []string{"expires"}) {
		t.Fatalf("plain token: user %q, caveats %q", tok.User(), tok.Caveats())
	}
	if !strings.HasPrefix(strings.TrimSpace(u.credd(t, 0, "token", "create").stdout), "devpi-") {
		t.Error("created token lacks the devpi- prefix")
	}
}

func TestTokenCreateRestrictions(t *testing.T) {
	u := newUser(t)
	u.login(t)
	tests := []struct {
		name  string
		args  []string
		keys  []string
		want  string
		lines []string
	}{
		{"allowed", []string{"-a", "pkg_read", "--allowed=toxresult_upload , pypi_submit", "--yes"},
			[]string{"allowed", "expires"}, "allowed=pkg_read,pypi_submit,toxresult_upload",
			[]string{"        restrictions:", "            allowed=pkg_read,pypi_submit,toxresult_upload", "            expires=*"}},
		{"indexes", []string{"-i", u.name + "/foo", "--indexes=" + u.name + "/bar , " + u.name + "/ham"},
			[]string{"expires", "indexes"}, "indexes=" + u.name + "/bar," + u.name + "/foo," + u.name + "/ham",
			[]string{"        restrictions:", "            expires=*", "            indexes=" + u.name + "/bar," + u.name + "/foo," + u.name + "/ham"}},
		{"projects", []string{"-p", "foo", "--projects=bar , ham"},
			[]string{"expires", "projects"}, "projects=bar,foo,ham",
			[]string{"        restrictions:", "            expires=*", "            projects=bar,foo,ham"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := parseToken(t, u.credd(t, 0, append([]string{"token", "create"}, tt.args...)...).stdout)
			if !slices.Equal(keys(tok), tt.keys) {
				t.Fatalf("caveats %q, want keys %q", tok.Caveats(), tt.keys)
			}
			if !slices.Contains(tok.Caveats(), tt.want) {
				t.Errorf("caveats %q lack %q", tok.Caveats(), tt.want)
			}
			f := u.writeFile(t, "tok-"+tt.name, tok.Reveal())
			out := u.credd(t, 0, "token", "inspect", "-f", f).stdout
			hasLines(t, out, "    id         : "+tok.ID())
			hasLines(t, out, "    restriction: "+tt.want)
			list := u.credd(t, 0, "token", "list").stdout
			hasLines(t, list, append([]string{"    " + tok.ID()}, tt.lines...)...)
		})
	}
	// Without --yes and without a terminal, an unknown permission is refused.
	r := u.credd(t, 1, "token", "create", "-a", "pypi_submit")
	if !strings.Contains(r.stderr, "The following permissions are not known: pypi_submit") {
		t.Errorf("unknown permission: %s", r)
	}
}

func TestTokenDerive(t *testing.T) {
	u := newUser(t)
	u.login(t)
	rootFile := filepath.Join(u.home, "root.token")
	u.credd(t, 0, "token", "create", "-o", rootFile)
	r := u.credd(t, 2, "token", "derive", "-f", rootFile)
	if !strings.Contains(r.stderr, "No restrictions provided") {
		t.Errorf("derive without restrictions: %s", r)
	}
	d := parseToken(t, u.credd(t, 0, "token", "derive", "-f", rootFile, "-e", "1 day").stdout)
	cs := d.Caveats()
	if len(cs) != 2 || !strings.HasPrefix(cs[0], "expires=") || !strings.HasPrefix(cs[1], "expires=") {
		t.Fatalf("derived caveats %q", cs)
	}
	first, _ := strconv.ParseInt(strings.TrimPrefix(cs[0], "expires="), 10, 64)
	second, _ := strconv.ParseInt(strings.TrimPrefix(cs[1], "expires="), 10, 64)
	if second >= first {
		t.Errorf("derived expiry %d not before %d", second, first)
	}
	out := u.credd(t, 0, "token", "inspect", "-f", u.writeFile(t, "d1", d.Reveal())).stdout
	hasLines(t, out, "    restriction: expires=*", "    restriction: expires=*")

	d = parseToken(t, u.credd(t, 0, "token", "derive", "-f", rootFile, "-i", u.name+"/bar").stdout)
	if cs := d.Caveats(); len(cs) != 2 || cs[1] != "indexes="+u.name+"/bar" {
		t.Fatalf("derived caveats %q", cs)
	}
	out = u.credd(t, 0, "token", "inspect", "-f", u.writeFile(t, "d2", d.Reveal())).stdout
	hasLines(t, out, "    restriction: expires=*", "    restriction: indexes="+u.name+"/bar")
}

func TestTokenInspectFromFile(t *testing.T) {
	u := newUser(t)
	u.login(t)
	f := filepath.Join(u.home, "t")
	u.credd(t, 0, "token", "create", "-o", f)
	if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("-o file: %v %v", st, err)
	}
	out := u.credd(t, 0, "token", "inspect", "-f", f).stdout
	hasLines(t, out, "    user       : "+u.name, "    id         : *", "    restriction: expires=*")
}

func TestTokenListDelete(t *testing.T) {
	u := newUser(t)
	u.login(t)
	tok := parseToken(t, u.credd(t, 0, "token", "create").stdout)
	out := u.credd(t, 0, "token", "list").stdout
	hasLines(t, out, "Tokens for '"+u.name+"':", "    "+tok.ID())
	js := u.credd(t, 0, "token", "list", "--json").stdout
	if !strings.Contains(js, `"id": "`+tok.ID()+`"`) {
		t.Errorf("list --json: %s", js)
	}
	out = u.credd(t, 0, "token", "delete", tok.ID()).stdout
	if strings.TrimSpace(out) != "token "+tok.ID()+" deleted" {
		t.Errorf("delete said %q", out)
	}
	out = u.credd(t, 0, "token", "list").stdout
	if strings.TrimSpace(out) != "No tokens for '"+u.name+"'" {
		t.Errorf("list after delete: %q", out)
	}
	r := u.credd(t, 1, "token", "delete", tok.ID())
	if !strings.Contains(r.stderr, "404 Not Found") || !strings.Contains(r.stderr, "No token with id "+tok.ID()) {
		t.Errorf("deleting again: %s", r)
	}
}

func TestTokenLogin(t *testing.T) {
	u := newUser(t)
	u.login(t)
	f := filepath.Join(u.home, "t")
	u.credd(t, 0, "token", "create", "-o", f)
	tok := parseToken(t, readFile(t, f))
	u.devpi(t, 0, "use", bed.url)
	out := u.devpi(t, 0, "use").stdout
	if !strings.Contains(out, "not logged in") {
		t.Fatalf("devpi use before: %s", out)
	}
	r := u.credd(t, 0, "token", "login", "-f", f, "--devpi-client")
	if !strings.Contains(r.stdout, "logged in '"+u.name+"'") {
		t.Errorf("token login: %s", r)
	}
	if out := u.devpi(t, 0, "use").stdout; !strings.Contains(out, "logged in as "+u.name) {
		t.Errorf("devpi use after token login: %s", out)
	}
	// devpi-client really authenticates with the token: creating an index
	// needs a login.
	u.devpi(t, 0, "index", "-c", "via-token")
	if err := bed.api("GET", u.name+"/via-token", "-", nil, nil); err != nil {
		t.Errorf("the index made through the token login is missing: %v", err)
	}
	authFile := filepath.Join(u.home, ".devpi", "client", "auth.json")
	if st, err := os.Stat(authFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("devpi-client's auth.json: %v %v", st, err)
	}
	// Logging devpi-client in at a server other than its current one would
	// log it out where it is: refused, and its state is left alone.
	before := readFile(t, authFile)
	other := strings.Replace(bed.url, "127.0.0.1", "localhost", 1)
	r = u.credd(t, 1, "token", "login", "-f", f, "--url", other, "--devpi-client")
	if !strings.Contains(r.stderr, "devpi-client uses "+bed.url+", not "+other) {
		t.Errorf("token login for another server: %s", r)
	}
	if readFile(t, authFile) != before {
		t.Error("the refused login changed devpi-client's auth.json")
	}
	if _, err := os.Stat(filepath.Join(u.home, ".local", "state", "devpi-credd", "tokens", "localhost-"+port(t)+".token")); err == nil {
		t.Error("the refused login stored the token")
	}
	// The token is now this machine's long-lived token for the server.
	stored := filepath.Join(u.home, ".local", "state", "devpi-credd", "tokens", "127-0-0-1-"+port(t)+".token")
	st, err := os.Stat(stored)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stored token: %v %v", st, err)
	}
	if !parseToken(t, readFile(t, stored)).Equal(tok) {
		t.Error("the stored token differs")
	}
}

func port(t *testing.T) string {
	t.Helper()
	return strings.TrimSuffix(bed.url[strings.LastIndex(bed.url, ":")+1:], "/")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoginWithTokenAsPassword(t *testing.T) {
	u := newUser(t)
	u.login(t)
	tok := parseToken(t, u.credd(t, 0, "token", "create").stdout)
	u.credd(t, 0, "logout")
	r := u.creddStdin(t, 1, tok.Reveal()+"\n", "login", "--url", bed.url, u.name, "--password-stdin")
	if !strings.Contains(r.stderr, "401 Unauthorized") || !strings.Contains(r.stderr, "could not be authenticated") {
		t.Errorf("login with a token as password: %s", r)
	}
	noSecret(t, r, tok)
}

// noSecret fails when a token or its signature shows in a program's output.
func noSecret(t *testing.T, r result, tok *token.Token) {
	t.Helper()
	body := strings.TrimPrefix(tok.Reveal(), token.Prefix)
	sig := hex.EncodeToString(tok.Signature())
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, body[len(body)-20:]) || strings.Contains(s, sig[:16]) {
			t.Errorf("output leaks the token: %s", r)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 0 {
		t.Errorf("error is %d lines, want one: %s", n+1, r)
	}
}

func TestTokenLoginDeleted(t *testing.T) {
	u := newUser(t)
	u.login(t)
	f := filepath.Join(u.home, "t")
	u.credd(t, 0, "token", "create", "-o", f)
	tok := parseToken(t, readFile(t, f))
	u.credd(t, 0, "token", "delete", tok.ID())
	r := u.credd(t, 1, "token", "login", "-f", f)
	if !strings.Contains(r.stderr, "The token id "+tok.ID()+" doesn't exist") {
		t.Errorf("login with a deleted token: %s", r)
	}
	noSecret(t, r, tok)
}

func TestTokenForOtherUserForbidden(t *testing.T) {
	u := newUser(t)
	other := newUser(t)
	u.login(t)
	r := u.credd(t, 1, "token", "create", "--user", other.name)
	if !strings.Contains(r.stderr, "403 Forbidden: Access was denied to this resource. Unauthorized: user_token_create failed permission check") {
		t.Errorf("token for another user: %s", r)
	}
}

func TestRootCreatesForOthers(t *testing.T) {
	u := newUser(t)
	root := rootUser(t)
	root.login(t)
	tok := parseToken(t, root.credd(t, 0, "token", "create", "-u", u.name).stdout)
	if tok.User() != u.name {
		t.Fatalf("token user %q, want %q", tok.User(), u.name)
	}
	out := root.credd(t, 0, "token", "list", "-u", u.name).stdout
	hasLines(t, out, "Tokens for '"+u.name+"':", "    "+tok.ID())
}

func TestCreateExpiration(t *testing.T) {
	u := newUser(t)
	root := rootUser(t)
	root.login(t)
	never := parseToken(t, root.credd(t, 0, "token", "create", "-u", u.name, "-e", "never").stdout)
	out := root.credd(t, 0, "token", "inspect", "-f", root.writeFile(t, "never", never.Reveal())).stdout
	hasLines(t, out, "    restriction: expires=never")
	long := parseToken(t, root.credd(t, 0, "token", "create", "-u", u.name, "-e", "3 years").stdout)
	if exp := long.Scope().Expires; exp == nil || exp.Before(time.Now().AddDate(2, 11, 0)) {
		t.Errorf("3 years token expires %v", exp)
	}
	out = root.credd(t, 0, "token", "list", "-u", u.name).stdout
	want := map[string][]string{
		never.ID(): {"    " + never.ID(), "        restrictions:", "            expires=never"},
		long.ID():  {"    " + long.ID(), "        restrictions:", "            expires=*"},
	}
	ids := []string{never.ID(), long.ID()}
	slices.Sort(ids)
	lines := []string{"Tokens for '" + u.name + "':"}
	for _, id := range ids {
		lines = append(lines, want[id]...)
	}
	hasLines(t, out, lines...)

	// The same is refused for a normal user.
	u.login(t)
	r := u.credd(t, 1, "token", "create", "-e", "never")
	if !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "Not allowed to create token with no expiration") {
		t.Errorf("-e never as a user: %s", r)
	}
	r = u.credd(t, 1, "token", "create", "-e", "3 years")
	if !strings.Contains(r.stderr, "Not allowed to set expiration to more than one year") {
		t.Errorf("-e '3 years' as a user: %s", r)
	}
	r = u.credd(t, 1, "token", "create", "-e", "-1 day")
	if !strings.Contains(r.stderr, "Can't set expiration before current time") {
		t.Errorf("-e '-1 day': %s", r)
	}
}

var infoLine = regexp.MustCompile(`^\s+(user|id|restriction)\s*: (.*)$`)

// inspected reads token-inspect output, devpi-client's or ours, into
// comparable lines, dropping the local date that follows an expiry.
func inspected(out string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		m := infoLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := m[2]
		if strings.HasPrefix(v, "expires=") {
			v, _, _ = strings.Cut(v, " (")
		}
		got = append(got, m[1]+": "+v)
	}
	return got
}

// TestPythonInterop: tokens made by devpi-credd are read by devpi-client's
// token-inspect (pymacaroons) the same way, and the reverse.
func TestPythonInterop(t *testing.T) {
	u := newUser(t)
	u.login(t)
	dev := u.newIndex(t, "dev")
	rootFile := filepath.Join(u.home, "root.token")
	u.credd(t, 0, "token", "create", "-a", "upload,pkg_read", "-p", "foo", "-o", rootFile)
	derived := u.credd(t, 0, "token", "derive", "-f", rootFile, "-e", "1h", "-i", dev, "-p", "Foo.Bar,foo").stdout
	derivedFile := u.writeFile(t, "derived.token", derived)

	sameInspect(t, u, rootFile, derivedFile)

	// devpi-client's own tokens, created and derived, read by devpi-credd.
	u.devpi(t, 0, "use", bed.url)
	u.devpi(t, 0, "login", u.name, "--password", u.password)
	pyRoot := lastLine(u.devpi(t, 0, "token-create", "-a", "upload", "-i", dev).stdout)
	pyRootFile := u.writeFile(t, "py-root.token", pyRoot)
	pyDerived := lastLine(u.devpi(t, 0, "token-derive", "-f", pyRootFile, "-e", "2 hours", "-p", "bar").stdout)
	pyDerivedFile := u.writeFile(t, "py-derived.token", pyDerived)
	sameInspect(t, u, pyRootFile, pyDerivedFile)
	// And devpi-credd derives from devpi-client's unprefixed derived token.
	again := parseToken(t, u.credd(t, 0, "token", "derive", "-f", pyDerivedFile, "-a", "upload").stdout)
	if n := len(again.Caveats()); n != 6 {
		t.Errorf("derived from devpi-client's token: %d caveats %q", n, again.Caveats())
	}
}

// sameInspect checks that devpi-credd and devpi-client read each token file
// as the same user, id and restrictions.
func sameInspect(t *testing.T, u *user, files ...string) {
	t.Helper()
	for _, f := range files {
		ours := inspected(u.credd(t, 0, "token", "inspect", "-f", f).stdout)
		theirs := inspected(u.devpi(t, 0, "token-inspect", "-f", f).stdout)
		if len(ours) < 3 || !slices.Equal(ours, theirs) {
			t.Errorf("%s:\n devpi-credd: %q\n devpi-client: %q", filepath.Base(f), ours, theirs)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestReusesDevpiClientSession: a devpi-client user who is logged in there
// needs no devpi-credd login and no --url.
func TestReusesDevpiClientSession(t *testing.T) {
	u := newUser(t)
	u.devpi(t, 0, "use", bed.url)
	u.devpi(t, 0, "login", u.name, "--password", u.password)
	tok := parseToken(t, u.credd(t, 0, "token", "create", "-e", "1 day").stdout)
	if tok.User() != u.name {
		t.Errorf("token for %q, want %q", tok.User(), u.name)
	}
	out := u.credd(t, 0, "token", "list").stdout
	hasLines(t, out, "Tokens for '"+u.name+"':", "    "+tok.ID())
	// devpi-credd's own state stays empty: it only read devpi-client's.
	if _, err := os.Stat(filepath.Join(u.home, ".local", "state", "devpi-credd", "auth.json")); err == nil {
		t.Error("devpi-credd wrote a session of its own")
	}
}

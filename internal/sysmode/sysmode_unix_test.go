//go:build unix

package sysmode

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// daemonAccount stands in for the devpi-credd user: another uid when the
// test runs as root (so that owners are checked), else the test's own.
func daemonAccount() Account {
	if os.Getuid() == 0 {
		return Account{4242, 4242}
	}
	return Account{os.Getuid(), os.Getgid()}
}

func mkToken(t *testing.T, id string) *token.Token {
	t.Helper()
	tok, err := token.New([]byte("sysmode test key"), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var devpiExample, _ = url.Parse("https://devpi.example/")

// fixture runs Setup in a tree of its own, with the umask open, so that
// the modes are Setup's.
type fixture struct {
	t      *testing.T
	root   string
	checks []string
}

func newFixture(t *testing.T) *fixture {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	return &fixture{t: t, root: t.TempDir()}
}

func (f *fixture) setup(serve int, srv *Server) (*Result, error) {
	return Setup(Options{Root: f.root, Daemon: daemonAccount(), Serve: serve, Server: srv,
		Check: func(u *url.URL, tok *token.Token) error {
			f.checks = append(f.checks, u.String()+" "+tok.ID())
			if tok.ID() == "refused" {
				return errors.New("the server refuses the token")
			}
			return nil
		}})
}

func (f *fixture) mustSetup(serve int, srv *Server) *Result {
	f.t.Helper()
	r, err := f.setup(serve, srv)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) path(p string) string { return filepath.Join(f.root, p) }

// file checks p's mode and owner, and returns its content.
func (f *fixture) file(p string, mode fs.FileMode, uid int) string {
	f.t.Helper()
	st, err := os.Lstat(f.path(p))
	if err != nil {
		f.t.Fatal(err)
	}
	if st.Mode() != mode {
		f.t.Errorf("%s: mode %v, want %v", p, st.Mode(), mode)
	}
	if owner, _ := safefile.OwnerUID(st); owner != uid {
		f.t.Errorf("%s: owner %d, want %d", p, owner, uid)
	}
	if st.IsDir() {
		return ""
	}
	b, err := os.ReadFile(f.path(p))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func actions(r *Result) map[string]Action {
	m := map[string]Action{}
	for _, c := range r.Files {
		m[c.Path] = c.Action
	}
	return m
}

const (
	confPath  = "/etc/devpi-credd/config.toml"
	tokenPath = "/var/lib/devpi-credd/tokens/devpi-example.token"
	apprPath  = "/var/lib/devpi-credd/approval.json"
)

func TestSetup(t *testing.T) {
	f := newFixture(t)
	d := daemonAccount()
	tok := mkToken(t, "first")
	r := f.mustSetup(1000, &Server{URL: devpiExample, Token: tok})
	want := map[string]Action{"/etc/devpi-credd": Created, confPath: Created, "/var/lib/devpi-credd": Created,
		"/var/lib/devpi-credd/tokens": Created, tokenPath: Created, apprPath: Created}
	if got := actions(r); !sameActions(got, want) || r.Server != "devpi-example" || r.URL != "https://devpi.example/" {
		t.Errorf("first run: %+v, want %v", r, want)
	}
	if !slices.Equal(f.checks, []string{"https://devpi.example/ first"}) {
		t.Errorf("token checks: %v", f.checks)
	}
	// The layout the unit and the daemon expect.
	f.file("/etc/devpi-credd", fs.ModeDir|0o755, os.Geteuid())
	text := f.file(confPath, 0o644, os.Geteuid())
	f.file("/var/lib/devpi-credd", fs.ModeDir|0o700, d.UID)
	f.file("/var/lib/devpi-credd/tokens", fs.ModeDir|0o700, d.UID)
	if got := f.file(tokenPath, 0o600, d.UID); got != tok.Reveal()+"\n" {
		t.Errorf("the token file holds %q", got)
	}
	var rec approval.Record
	if err := json.Unmarshal([]byte(f.file(apprPath, 0o600, d.UID)), &rec); err != nil || rec.Enrolled() || !rec.Policy.Uploads {
		t.Errorf("approval record: %+v, %v: want uploads to need a code and no authenticator", rec, err)
	}
	// The daemon reads it as its user: here, when that is the test's.
	if d.UID == os.Getuid() {
		if rec, err := (store.ApprovalFile{Path: f.path(apprPath)}).Load(); err != nil || rec.Enrolled() || !rec.Policy.Uploads {
			t.Errorf("store.ApprovalFile.Load: %+v, %v", rec, err)
		}
	}
	c, err := config.Parse(confPath, []byte(text), xdg.SystemGetenv)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if c.Socket != "/run/devpi-credd/socket" || c.SharedSocket != xdg.SystemSocket || !slices.Equal(c.AllowUIDs, []int{1000}) ||
		!slices.Equal(c.AllowGrant, []string{"session", "lock", "approval"}) || len(c.Servers) != 1 ||
		c.Servers[0].TokenFile != tokenPath || c.AuditLog != "/var/lib/devpi-credd/audit.log" {
		t.Errorf("config: %+v\n%s", c, text)
	}

	// Again: nothing changes, and the result says so.
	if r := f.mustSetup(1000, &Server{URL: devpiExample, Token: tok}); r.Changed() {
		t.Errorf("second run changed: %+v", r.Files)
	}
	if again := f.file(confPath, 0o644, os.Geteuid()); again != text {
		t.Errorf("second run rewrote the config:\n%s", again)
	}

	// Another user: only the config changes; the server by its name, a new
	// token: only the token file.
	r = f.mustSetup(1001, nil)
	if got := actions(r); got[confPath] != Updated || changed(r) != 1 {
		t.Errorf("another user: %v", got)
	}
	r = f.mustSetup(1001, &Server{Name: "devpi-example", Token: mkToken(t, "second")})
	if got := actions(r); got[tokenPath] != Updated || changed(r) != 1 || r.URL != "https://devpi.example/" {
		t.Errorf("a new token by the server's name: %v", got)
	}
	c, _ = config.Parse(confPath, []byte(f.file(confPath, 0o644, os.Geteuid())), xdg.SystemGetenv)
	if !slices.Equal(c.AllowUIDs, []int{1000, 1001}) {
		t.Errorf("allow_uids %v", c.AllowUIDs)
	}
	if !strings.Contains(f.file(tokenPath, 0o600, d.UID), mkToken(t, "second").Reveal()) {
		t.Error("the new token is not stored")
	}
}

func sameActions(a, b map[string]Action) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// changed counts the paths Setup changed.
func changed(r *Result) int {
	n := 0
	for _, c := range r.Files {
		if c.Action != Unchanged {
			n++
		}
	}
	return n
}

// What is there stays: the config's other servers and comments, and the
// person's approval record.
func TestSetupKeeps(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(f.path("/etc/devpi-credd"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "# the admin's\ndefault_ttl = \"2m\"\n\n[servers.other]\nurl = \"https://other.example/\"\n"
	if err := os.WriteFile(f.path(confPath), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(f.path("/var/lib/devpi-credd"), 0o700); err != nil {
		t.Fatal(err)
	}
	enrolled := `{"secret":"c2VjcmV0","policy":{"uploads":true}}` + "\n"
	if err := os.WriteFile(f.path(apprPath), []byte(enrolled), 0o600); err != nil {
		t.Fatal(err)
	}
	f.mustSetup(1000, &Server{URL: devpiExample, Token: mkToken(t, "t")})
	text := f.file(confPath, 0o644, os.Geteuid())
	if !strings.HasPrefix(text, "# the admin's\ndefault_ttl = \"2m\"\n") || !strings.Contains(text, "\n[servers.other]\nurl = \"https://other.example/\"\n") ||
		!strings.Contains(text, "\n[servers.devpi-example]\n") {
		t.Errorf("config:\n%s", text)
	}
	if got := f.file(apprPath, 0o600, daemonAccount().UID); got != enrolled {
		t.Errorf("the approval record was changed: %s", got)
	}
}

// ResetApproval starts over: the record that is there (someone enrolled)
// gives way to the first one; once it is that, nothing changes.
func TestSetupResetApproval(t *testing.T) {
	f := newFixture(t)
	f.mustSetup(1000, nil)
	first := f.file(apprPath, 0o600, daemonAccount().UID)
	enrolled := `{"secret":"c2VjcmV0","account":"worm","policy":{"uploads":true}}`
	if err := os.WriteFile(f.path(apprPath), []byte(enrolled), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := actions(f.mustSetup(1000, nil))[apprPath]; got != Unchanged || f.file(apprPath, 0o600, daemonAccount().UID) != enrolled {
		t.Fatalf("without ResetApproval: %s", got)
	}
	reset := func() *Result {
		r, err := Setup(Options{Root: f.root, Daemon: daemonAccount(), Serve: 1000, ResetApproval: true})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := actions(reset())[apprPath]; got != Updated || f.file(apprPath, 0o600, daemonAccount().UID) != first {
		t.Errorf("reset: %s, %s", got, f.file(apprPath, 0o600, daemonAccount().UID))
	}
	if r := reset(); r.Changed() {
		t.Errorf("reset again: %v", r.Files)
	}
}

// Owners and modes that are wrong are set right, and the result says so.
func TestSetupSecures(t *testing.T) {
	f := newFixture(t)
	tok := mkToken(t, "t")
	f.mustSetup(1000, &Server{URL: devpiExample, Token: tok})
	for p, mode := range map[string]fs.FileMode{confPath: 0o666, "/var/lib/devpi-credd": 0o755, tokenPath: 0o644, apprPath: 0o640, "/etc/devpi-credd": 0o777} {
		if err := os.Chmod(f.path(p), mode); err != nil {
			t.Fatal(err)
		}
	}
	r := f.mustSetup(1000, &Server{URL: devpiExample, Token: tok})
	want := map[string]Action{"/etc/devpi-credd": Secured, confPath: Secured, "/var/lib/devpi-credd": Secured,
		"/var/lib/devpi-credd/tokens": Unchanged, tokenPath: Secured, apprPath: Secured}
	if got := actions(r); !sameActions(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	d := daemonAccount()
	f.file("/etc/devpi-credd", fs.ModeDir|0o755, os.Geteuid())
	f.file(confPath, 0o644, os.Geteuid())
	f.file("/var/lib/devpi-credd", fs.ModeDir|0o700, d.UID)
	f.file(tokenPath, 0o600, d.UID)
	f.file(apprPath, 0o600, d.UID)
}

// Refusals write nothing: a token the server refuses, a server the config
// does not have, a token kept elsewhere than the state directory, a link
// where a file of the daemon's should be.
func TestSetupRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		conf string
		srv  *Server
		want string
	}{
		"refused token":  {"", &Server{URL: devpiExample, Token: nil}, "the server refuses the token"},
		"unknown name":   {"", &Server{Name: "nope"}, `has no server "nope": give its url`},
		"keychain":       {"[servers.k]\nurl = \"https://devpi.example/\"\nkeychain = true\n", &Server{Name: "k"}, "keeps its token in the keychain"},
		"token_file":     {"[servers.k]\nurl = \"https://devpi.example/\"\ntoken_file = \"/home/alice/k.token\"\n", &Server{URL: devpiExample}, "keeps its token in /home/alice/k.token, not in the daemon's state directory"},
		"the state dir":  {"[servers.k]\nurl = \"https://devpi.example/\"\ntoken_file = \"/var/lib/devpi-credd\"\n", &Server{URL: devpiExample}, "not in the daemon's state directory"},
		"broken config":  {"allow_uids = [", nil, "fix it first"},
		"another's name": {"[servers.devpi-example]\nurl = \"https://else.example/\"\n", &Server{Name: "devpi-example", URL: devpiExample}, "another url"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			if c.conf != "" {
				if err := os.MkdirAll(f.path("/etc/devpi-credd"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f.path(confPath), []byte(c.conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if c.srv != nil {
				c.srv.Token = mkToken(t, map[bool]string{true: "refused", false: "ok"}[name == "refused token"])
			}
			_, err := f.setup(1000, c.srv)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
			if _, err := os.Stat(f.path("/var/lib")); err == nil {
				t.Error("something was written under /var/lib")
			}
			if b, _ := os.ReadFile(f.path(confPath)); string(b) != c.conf {
				t.Errorf("the config changed: %q", b)
			}
		})
	}
}

// A link that the daemon's user put in its state directory is never
// followed out of it, and a link at a file of the daemon's is refused.
func TestSetupLinksInTheStateDir(t *testing.T) {
	f := newFixture(t)
	tok := mkToken(t, "t")
	f.mustSetup(1000, &Server{URL: devpiExample, Token: tok})
	outside := t.TempDir()
	tokens := f.path("/var/lib/devpi-credd/tokens")
	if err := os.RemoveAll(tokens); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, tokens); err != nil {
		t.Fatal(err)
	}
	if _, err := f.setup(1000, &Server{URL: devpiExample, Token: tok}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("tokens as a link out: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("wrote outside the state directory: %v", entries)
	}
	if err := os.Remove(tokens); err != nil {
		t.Fatal(err)
	}
	appr := f.path(apprPath)
	if err := os.Remove(appr); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x"), appr); err != nil {
		t.Fatal(err)
	}
	if _, err := f.setup(1000, nil); err == nil || !strings.Contains(err.Error(), "approval.json is a symbolic link, not a regular file") {
		t.Errorf("approval.json as a link: %v", err)
	}
}

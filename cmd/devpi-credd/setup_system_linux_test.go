package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/sysmode"
	"github.com/devpi-credd/devpi-credd/token"
)

// setupSystemBed is setup-system against a stand-in devpi-server that
// takes one token, with a user database of alice (1000) and, unless
// removed, devpi-credd, in a tree of the test's own.
type setupSystemBed struct {
	t      *testing.T
	root   string
	server *httptest.Server
	token  *token.Token
	users  map[string]*user.User
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func newSetupSystemBed(t *testing.T) *setupSystemBed {
	tok, err := token.New([]byte("setup-system test key"), "alice", "abc")
	if err != nil {
		t.Fatal(err)
	}
	b := &setupSystemBed{t: t, root: t.TempDir(), token: tok}
	// devpi-credd's uid is the test's own unless the test runs as root,
	// so that handing files to it works either way.
	duid := os.Getuid()
	if duid == 0 {
		duid = 4242
	}
	b.users = map[string]*user.User{
		"alice":       {Username: "alice", Uid: "1000", Gid: "1000"},
		"root":        {Username: "root", Uid: "0", Gid: "0"},
		"devpi-credd": {Username: "devpi-credd", Uid: strconv.Itoa(duid), Gid: strconv.Itoa(duid)},
	}
	want := base64.StdEncoding.EncodeToString([]byte("alice:" + tok.Reveal()))
	b.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := []any{"noauth", "", []any{}}
		if r.URL.Path == "/+api" && r.Header.Get("X-Devpi-Auth") == want {
			status = []any{"ok", "alice", []any{}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "apiconfig", "result": map[string]any{"authstatus": status}})
	}))
	t.Cleanup(b.server.Close)
	return b
}

// run runs setup-system with args (and --root), as uid euid, with stdin,
// and returns its exit code.
func (b *setupSystemBed) run(euid int, stdin string, args ...string) int {
	b.stdout.Reset()
	b.stderr.Reset()
	a := &app{stdin: strings.NewReader(stdin), stdout: &b.stdout, stderr: &b.stderr, getenv: func(string) string { return "" },
		now: time.Now, interactive: func() bool { return false }, http: b.server.Client()}
	a.stdinLines = bufio.NewReader(a.stdin)
	cmd := a.setupSystemCmd(func(ctx context.Context, o setupSystemOptions) error {
		o.euid = func() int { return euid }
		o.lookup = func(name string) (*user.User, error) {
			if u, ok := b.users[name]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(name)
		}
		return a.runSetupSystem(ctx, o)
	})
	cmd.SetArgs(append([]string{"--root", b.root}, args...))
	cmd.SetOut(&b.stdout)
	cmd.SetErr(&b.stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	b.stderr.WriteString(err.Error() + "\n")
	return exitCode(err)
}

func (b *setupSystemBed) tokenFile(text string) string {
	p := filepath.Join(b.t.TempDir(), "root.token")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// nothingWritten: a refusal leaves the tree as it was.
func (b *setupSystemBed) nothingWritten() {
	b.t.Helper()
	if entries, _ := os.ReadDir(b.root); len(entries) != 0 {
		b.t.Errorf("written: %v", entries)
	}
}

func TestSetupSystem(t *testing.T) {
	b := newSetupSystemBed(t)
	file := b.tokenFile(b.token.Reveal() + "\n")
	args := []string{"--user", "alice", "--url", b.server.URL, "--token-file", file}
	if code := b.run(0, "", args...); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr.String())
	}
	out := b.stdout.String()
	for _, want := range []string{"created /etc/devpi-credd/config.toml\n", "created /var/lib/devpi-credd/approval.json\n",
		"next:\n  systemctl try-restart devpi-credd-system", "\n  systemctl enable --now devpi-credd-system    # as root\n",
		"\n  devpi-credd approval setup    # as alice, at once: ", "\n  shred -u " + file + "    # the daemon has its own copy\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+b.stderr.String(), b.token.Reveal()) {
		t.Error("the token is in the output")
	}
	conf, err := os.ReadFile(filepath.Join(b.root, "etc/devpi-credd/config.toml"))
	if err != nil || !strings.Contains(string(conf), "allow_uids = [1000]\n") {
		t.Errorf("config: %s %v", conf, err)
	}

	// Again, with --json: nothing changes, and every file says so.
	if code := b.run(0, "", append(args, "--json")...); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr.String())
	}
	var res struct {
		User, Server, URL string
		UID               int
		Files             []sysmode.Change
		Next              []string
	}
	if err := json.Unmarshal(b.stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, b.stdout.String())
	}
	if res.User != "alice" || res.UID != 1000 || res.URL != b.server.URL+"/" || len(res.Files) != 6 || len(res.Next) != 3 {
		t.Errorf("%+v", res)
	}
	for _, f := range res.Files {
		if f.Action != sysmode.Unchanged {
			t.Errorf("second run: %s %s", f.Action, f.Path)
		}
	}
	// The token from standard input, by the server's name.
	if code := b.run(0, b.token.Reveal()+"\n", "--user", "alice", "--name", res.Server, "--token-file", "-"); code != 0 || !strings.HasPrefix(b.stdout.String(), "nothing to change: the system daemon serves alice (uid 1000)\n") ||
		strings.Contains(b.stdout.String(), "shred") || strings.Contains(b.stdout.String(), "try-restart") {
		t.Errorf("exit %d: %s%s", code, b.stdout.String(), b.stderr.String())
	}
}

// --reset-approval starts over, and says to restart a daemon that runs.
func TestSetupSystemResetApproval(t *testing.T) {
	b := newSetupSystemBed(t)
	if code := b.run(0, "", "--user", "alice"); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr.String())
	}
	appr := filepath.Join(b.root, "var/lib/devpi-credd/approval.json")
	first, _ := os.ReadFile(appr)
	if err := os.WriteFile(appr, []byte(`{"secret":"c2VjcmV0","policy":{"uploads":true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 { // the daemon's user's, as the bed has it
		if err := os.Chown(appr, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	if code := b.run(0, "", "--user", "alice", "--reset-approval"); code != 0 || !strings.Contains(b.stdout.String(), "updated /var/lib/devpi-credd/approval.json\n") ||
		!strings.Contains(b.stdout.String(), "\n  systemctl try-restart devpi-credd-system") {
		t.Errorf("exit %d: %s%s", code, b.stdout.String(), b.stderr.String())
	}
	if got, _ := os.ReadFile(appr); string(got) != string(first) {
		t.Errorf("after --reset-approval: %s, want %s", got, first)
	}
}

// Refusals, with one line each and nothing written.
func TestSetupSystemRefuses(t *testing.T) {
	b := newSetupSystemBed(t)
	good := b.tokenFile(b.token.Reveal() + "\n")
	other, err := token.New([]byte("another key"), "alice", "zzz")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		euid int
		args []string
		code int
		want string
	}{
		{"no --user", 0, nil, 2, "--user NAME is needed"},
		{"--url alone", 0, []string{"--user", "alice", "--url", b.server.URL}, 2, "--url and --name need --token-file"},
		{"--token-file alone", 0, []string{"--user", "alice", "--token-file", good}, 2, "--token-file needs --url ROOT (or --name of a server in /etc/devpi-credd/config.toml)"},
		{"bad --name", 0, []string{"--user", "alice", "--name", "A.B", "--token-file", good}, 2, `--name "A.B"`},
		{"not root", 1000, []string{"--user", "alice"}, 1, "run it as root"},
		{"no such user", 0, []string{"--user", "mallory"}, 1, "there is no user mallory: name the user to serve"},
		{"root", 0, []string{"--user", "root"}, 2, "root is served anyway"},
		{"the daemon's user", 0, []string{"--user", "devpi-credd"}, 2, "that is the daemon's own user"},
		{"a token the server refuses", 0, []string{"--user", "alice", "--url", b.server.URL, "--token-file", b.tokenFile(other.Reveal())}, 1,
			"login with token alice-zzz at " + b.server.URL + "/ failed"},
		{"not a token", 0, []string{"--user", "alice", "--url", b.server.URL, "--token-file", b.tokenFile("hello")}, 2, "token file"},
		{"unknown server name", 0, []string{"--user", "alice", "--name", "nope", "--token-file", good}, 1, `has no server "nope"`},
	} {
		if code := b.run(c.euid, "", c.args...); code != c.code || !strings.Contains(b.stderr.String(), c.want) {
			t.Errorf("%s: exit %d, %q; want %d, %q", c.name, code, b.stderr.String(), c.code, c.want)
		}
		b.nothingWritten()
	}
	delete(b.users, "devpi-credd")
	if code := b.run(0, "", "--user", "alice"); code != 1 || !strings.Contains(b.stderr.String(), "there is no user devpi-credd, which the system daemon runs as: install the .deb or .rpm") {
		t.Errorf("no devpi-credd user: exit %d, %q", code, b.stderr.String())
	}
	b.nothingWritten()
}

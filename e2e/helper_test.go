//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockedSetup is a user whose only credential on the machine is the
// long-lived token in devpi-credd's store, a running daemon that knows the
// read-protected server (nginx + devpi-lockdown), a 'keyring' link on PATH,
// and a package on USER/dev.
type lockedSetup struct {
	u       *user
	dev     string
	d       *daemonProc
	linkDir string
	pkg     string
}

func newLockedSetup(t *testing.T) *lockedSetup {
	t.Helper()
	u := newUser(t)
	u.login(t)
	s := &lockedSetup{u: u, dev: u.newIndex(t, "dev"), linkDir: filepath.Join(u.home, "bin"), pkg: "locked-pkg"}
	rootFile := filepath.Join(u.home, "root.token")
	u.credd(t, 0, "token", "create", "-o", rootFile)
	u.credd(t, 0, "token", "login", "-f", rootFile, "--url", bed.locked, "--name", "locked")
	// Nothing but the daemon's store holds a credential from here on.
	must(t, os.Remove(rootFile))
	u.credd(t, 0, "logout")
	s.d = u.serve(t)
	r := u.runEnv(t, u.daemonEnv(), "", bed.bin, "keyring-link", s.linkDir)
	if r.code != 0 || !strings.Contains(r.stdout, "keyring-provider") {
		t.Fatalf("keyring-link: %s", r)
	}
	// The package to install, uploaded with a token from the daemon.
	_, tok := credsOf(t, u.get(t, 0, "--json", bed.locked+s.dev+"/"))
	r = u.runEnv(t, []string{"TWINE_USERNAME=" + tok.User(), "TWINE_PASSWORD=" + tok.Reveal()}, "",
		bed.py("client", "twine"), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", bed.locked+s.dev+"/", u.wheel(t, s.pkg, "1.0"))
	if r.code != 0 {
		t.Fatalf("uploading the package: %s", r)
	}
	return s
}

// env: the keyring link first on PATH, devpi-credd after it (for the
// Python backend), the daemon's socket, and no forced keyring backend.
func (s *lockedSetup) env(extra ...string) []string {
	return append([]string{
		"PATH=" + s.linkDir + ":" + filepath.Dir(bed.bin) + ":/usr/local/bin:/usr/bin:/bin",
		"XDG_RUNTIME_DIR=" + s.u.runtimeDir(),
		"PYTHON_KEYRING_BACKEND=",
		"PIP_DISABLE_PIP_VERSION_CHECK=1",
		"PIP_NO_CACHE_DIR=1",
		"UV_NO_CACHE=1",
		"UV_PYTHON_DOWNLOADS=never",
		"COLUMNS=1000",
		"NO_COLOR=1",
	}, extra...)
}

func (s *lockedSetup) run(t *testing.T, extra []string, prog string, args ...string) result {
	t.Helper()
	start := time.Now()
	r := s.u.runEnv(t, s.env(extra...), "", prog, args...)
	if d := time.Since(start); d > time.Minute {
		t.Errorf("%s took %s", prog, d)
	}
	return r
}

// runIn is run in dir.
func (s *lockedSetup) runIn(t *testing.T, dir string, extra []string, prog string, args ...string) result {
	t.Helper()
	return runCmd(t, func(cmd *exec.Cmd) {
		cmd.Env = s.u.env(s.env(extra...)...)
		cmd.Dir = dir
	}, prog, args...)
}

func (s *lockedSetup) simple() string { return bed.locked + s.dev + "/+simple/" }

// withUser puts the user name (never a password) into a URL.
func (s *lockedSetup) withUser(u string) string {
	return strings.Replace(u, "http://", "http://"+s.u.name+"@", 1)
}

func (s *lockedSetup) installed(t *testing.T, target string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(target, strings.ReplaceAll(s.pkg, "-", "_"), "__init__.py")); err != nil {
		t.Errorf("%s is not installed in %s", s.pkg, target)
	}
}

// audit returns the daemon's audit lines.
func (s *lockedSetup) audit(t *testing.T) []auditLine {
	t.Helper()
	return readAudit(t, filepath.Join(s.u.home, ".local", "state", "devpi-credd", "audit.log"))
}

// readAudit returns the lines of the audit log at path.
func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

type auditLine struct {
	Event   string   `json:"event"`
	URL     string   `json:"url"`
	Op      string   `json:"op"`
	Caveats []string `json:"caveats"`
	Peer    struct {
		UID       int    `json:"uid"`
		Exe       string `json:"exe"`
		ParentExe string `json:"parent_exe"`
	} `json:"peer"`
	Reason string `json:"reason"`
	Count  int    `json:"count"` // a refuse_summary's
}

// mark is where the audit log stands now: minted looks only after it.
func (s *lockedSetup) mark(t *testing.T) int { return len(s.audit(t)) }

// minted checks that the audit log has, after mark, a mint for url with op,
// asked by a process of the tool named (its own executable or its
// parent's, for the keyring helper), with the caveats named.
func (s *lockedSetup) minted(t *testing.T, mark int, tool, url, op string, caveats ...string) {
	t.Helper()
	lines := s.audit(t)
	for _, l := range lines[mark:] {
		if tool != "" && !strings.Contains(filepath.Base(l.Peer.Exe)+" "+filepath.Base(l.Peer.ParentExe), tool) {
			continue
		}
		if l.Event != "mint" || l.URL != url || l.Op != op {
			continue
		}
		all := strings.Join(l.Caveats, " ")
		ok := true
		for _, c := range caveats {
			ok = ok && strings.Contains(all, c)
		}
		if ok {
			return
		}
	}
	t.Errorf("no %s mint by %s for %s with %q in the audit log after line %d:\n%+v", op, tool, url, caveats, mark, lines)
}

func TestPipNewestSubprocessJSON(t *testing.T) {
	s := newLockedSetup(t)
	target := filepath.Join(s.u.home, "t")
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "python"), "-m", "pip", "install", "--keyring-provider", "subprocess",
		"--index-url", s.simple(), "--target", target, s.pkg)
	if r.code != 0 {
		t.Fatalf("pip install: %s", r)
	}
	s.installed(t, target)
	s.minted(t, mark, "python", s.simple(), "read", "allowed=pkg_read", "indexes="+s.dev)
}

func TestPip25SubprocessPlain(t *testing.T) {
	s := newLockedSetup(t)
	target := filepath.Join(s.u.home, "t")
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("pip25", "python"), "-m", "pip", "install", "--keyring-provider", "subprocess",
		"--index-url", s.withUser(s.simple()), "--target", target, s.pkg)
	if r.code != 0 {
		t.Fatalf("pip 25 install: %s", r)
	}
	s.installed(t, target)
	s.minted(t, mark, "python", s.simple(), "read", "allowed=pkg_read")
}

func TestPipImportProvider(t *testing.T) {
	s := newLockedSetup(t)
	target := filepath.Join(s.u.home, "t")
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "python"), "-m", "pip", "install", "--keyring-provider", "import",
		"--index-url", s.simple(), "--target", target, s.pkg)
	if r.code != 0 {
		t.Fatalf("pip install with the Python backend: %s", r)
	}
	s.installed(t, target)
	s.minted(t, mark, "python", s.simple(), "read", "allowed=pkg_read")
}

func TestUvSubprocess(t *testing.T) {
	s := newLockedSetup(t)
	target := filepath.Join(s.u.home, "t")
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "uv"), "pip", "install", "--keyring-provider", "subprocess",
		"--python", bed.py("client", "python"), "--index-url", s.withUser(s.simple()), "--target", target, s.pkg)
	if r.code != 0 {
		t.Fatalf("uv pip install: %s", r)
	}
	s.installed(t, target)
	s.minted(t, mark, "uv", s.simple(), "read", "allowed=pkg_read")
}

func TestUvAuthenticateAlways(t *testing.T) {
	s := newLockedSetup(t)
	target := filepath.Join(s.u.home, "t")
	cfg := filepath.Join(s.u.home, "uv.toml")
	must(t, os.WriteFile(cfg, []byte(`[[index]]
name = "devpi"
url = "`+s.simple()+`"
default = true
authenticate = "always"
`), 0o600))
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "uv"), "pip", "install", "--config-file", cfg, "--keyring-provider", "subprocess",
		"--python", bed.py("client", "python"), "--target", target, s.pkg)
	if r.code != 0 {
		t.Fatalf("uv pip install with authenticate = always: %s", r)
	}
	s.installed(t, target)
	s.minted(t, mark, "uv", s.simple(), "read", "allowed=pkg_read", "indexes="+s.dev)
}

func TestTwineThroughBackend(t *testing.T) {
	s := newLockedSetup(t)
	upload := bed.locked + s.dev + "/"
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "twine"), "upload", "--non-interactive", "--disable-progress-bar",
		"--repository-url", upload, s.u.wheel(t, s.pkg, "2.0"))
	if r.code != 0 {
		t.Fatalf("twine upload through the keyring backend: %s", r)
	}
	s.minted(t, mark, "python", upload, "upload", "allowed=upload", "indexes="+s.dev)
	if n := len(s.audit(t)) - mark; n != 1 {
		t.Errorf("one twine upload minted %d tokens, want 1", n)
	}
}

func TestUvPublish(t *testing.T) {
	s := newLockedSetup(t)
	upload := bed.locked + s.dev + "/"
	mark := s.mark(t)
	r := s.run(t, nil, bed.py("client", "uv"), "publish", "--keyring-provider", "subprocess",
		"--publish-url", upload, "--username", s.u.name, s.u.wheel(t, s.pkg, "3.0"))
	if r.code != 0 {
		t.Fatalf("uv publish: %s", r)
	}
	s.minted(t, mark, "uv", upload, "upload", "allowed=upload", "indexes="+s.dev)
}

func TestDevpiClientLogin(t *testing.T) {
	s := newLockedSetup(t)
	r := s.run(t, nil, bed.py("client", "devpi"), "use", bed.locked+s.dev)
	if r.code != 0 {
		t.Fatalf("devpi use: %s", r)
	}
	// An entry for another server that devpi-login must keep.
	authFile := filepath.Join(s.u.home, ".devpi", "client", "auth.json")
	must(t, os.WriteFile(authFile, []byte(`{"auth": {"http://elsewhere.invalid/": [["carol", "carols-session"]]}}`), 0o644))
	mark := s.mark(t)
	r = s.run(t, nil, bed.bin, "devpi-login")
	if r.code != 0 || !strings.Contains(r.stdout, "devpi-client logged in as '"+s.u.name+"'") {
		t.Fatalf("devpi-credd devpi-login: %s", r)
	}
	if st, err := os.Stat(authFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("auth.json after devpi-login: %v %v", st, err)
	}
	if !strings.Contains(readFile(t, authFile), "carols-session") {
		t.Error("devpi-login dropped another server's entry")
	}
	if r := s.run(t, nil, bed.py("client", "devpi"), "use"); !strings.Contains(r.stdout, "logged in as "+s.u.name) {
		t.Errorf("devpi use after devpi-login: %s", r)
	}
	whl := s.u.wheel(t, s.pkg, "4.0")
	if r := s.run(t, nil, bed.py("client", "devpi"), "upload", whl); r.code != 0 {
		t.Fatalf("devpi upload: %s", r)
	}
	r = s.run(t, nil, bed.py("client", "devpi"), "list", s.pkg)
	if r.code != 0 || !strings.Contains(r.stdout, "locked_pkg-4.0-py3-none-any.whl") {
		t.Errorf("devpi list: %s", r)
	}
	s.minted(t, mark, "devpi-credd", bed.locked, "session")
}

// TestDaemonStoppedHelpers: with the daemon stopped, pip, uv and twine fail
// their own way, with our one-line reason, and nothing hangs. pip >= 26.2
// captures a keyring program's stderr and drops it, so there the reason
// cannot show; it does with pip 25 and with pip's import provider.
func TestDaemonStoppedHelpers(t *testing.T) {
	s := newLockedSetup(t)
	s.d.stop(t)
	// The helper itself answers at once.
	start := time.Now()
	r := s.run(t, nil, filepath.Join(s.linkDir, "keyring"), "--mode=creds", "--output=json", "get", s.simple())
	if d := time.Since(start); r.code != 1 || r.stdout != "" || d > time.Second {
		t.Errorf("keyring with the daemon stopped: %s after %s", r, d)
	}
	target := filepath.Join(s.u.home, "t")
	pipArgs := func(provider, index string) []string {
		return []string{"-m", "pip", "install", "--no-input", "--keyring-provider", provider, "--index-url", index, "--target", target, s.pkg}
	}
	for _, tc := range []struct {
		name   string
		prog   string
		args   []string
		reason bool
	}{
		{"pip newest, subprocess", bed.py("client", "python"), pipArgs("subprocess", s.simple()), false},
		{"pip 25, subprocess", bed.py("pip25", "python"), pipArgs("subprocess", s.withUser(s.simple())), true},
		{"pip, import", bed.py("client", "python"), pipArgs("import", s.simple()), true},
		{"uv", bed.py("client", "uv"), []string{"pip", "install", "--keyring-provider", "subprocess", "--python", bed.py("client", "python"), "--index-url", s.withUser(s.simple()), "--target", target, s.pkg}, true},
		{"twine", bed.py("client", "twine"), []string{"upload", "--non-interactive", "--repository-url", bed.locked + s.dev + "/", s.u.wheel(t, s.pkg, "9.0")}, true},
	} {
		start := time.Now()
		r = s.run(t, nil, tc.prog, tc.args...)
		if r.code == 0 {
			t.Errorf("%s succeeded without a daemon: %s", tc.name, r)
		}
		if tc.reason && strings.Count(r.stderr+r.stdout, "devpi-credd daemon is not running") == 0 {
			t.Errorf("%s: our reason is missing: %s", tc.name, r)
		}
		if strings.Contains(r.stderr, "Traceback") {
			t.Errorf("%s crashed instead of failing: %s", tc.name, r)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("%s took %s without a daemon", tc.name, d)
		}
	}
}

// TestOtherBackendsKeepWorking: with our backend installed, keyrings.alt's
// plain-text backend still answers for a service devpi-credd does not
// know, and ours for the devpi server.
func TestOtherBackendsKeepWorking(t *testing.T) {
	s := newLockedSetup(t)
	kr := bed.py("client", "keyring")
	data := []string{"XDG_DATA_HOME=" + filepath.Join(s.u.home, "data")}
	r := s.u.runEnv(t, append(s.env(), data...), "carols-password\n", kr, "-b", "keyrings.alt.file.PlaintextKeyring", "set", "https://other.example/", "carol")
	if r.code != 0 {
		t.Fatalf("keyring set: %s", r)
	}
	r = s.run(t, data, kr, "get", "https://other.example/", "carol")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "carols-password" {
		t.Errorf("plain-text backend beside ours: %s", r)
	}
	r = s.run(t, data, kr, "get", bed.locked+s.dev+"/", s.u.name)
	if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.stdout), "devpi-") {
		t.Errorf("our backend through the keyring CLI: %s", r)
	}
}

// TestPipTwoIndexesOneServer: pip keeps one credential per host. With
// index-scoped read tokens (the default) a second index on the same server
// is refused (403, which pip does not retry); read_scope = "server" makes
// one read token serve both.
func TestPipTwoIndexesOneServer(t *testing.T) {
	s := newLockedSetup(t)
	other := s.u.newIndex(t, "other")
	_, up := credsOf(t, s.u.get(t, 0, "--json", bed.locked+other+"/"))
	r := s.u.runEnv(t, []string{"TWINE_USERNAME=" + up.User(), "TWINE_PASSWORD=" + up.Reveal()}, "", bed.py("client", "twine"),
		"upload", "--non-interactive", "--repository-url", bed.locked+other+"/", s.u.wheel(t, "other-pkg", "1.0"))
	if r.code != 0 {
		t.Fatalf("upload to %s: %s", other, r)
	}
	pip := func() result {
		return s.run(t, nil, bed.py("client", "python"), "-m", "pip", "install", "--no-input", "--keyring-provider", "subprocess",
			"--index-url", s.simple(), "--extra-index-url", bed.locked+other+"/+simple/",
			"--target", filepath.Join(s.u.home, "t"), s.pkg, "other-pkg")
	}
	// pip skips the page it got a 403 for, so other-pkg is not found.
	if r := pip(); r.code == 0 || !strings.Contains(r.stderr, "No matching distribution found for other-pkg") {
		t.Errorf("index-scoped reads across two indexes: want pip to miss other-pkg, got %s", r)
	}
	cfg := filepath.Join(s.u.home, ".config", "devpi-credd", "config.toml")
	must(t, os.WriteFile(cfg, []byte(readFile(t, cfg)+"read_scope = \"server\"\n"), 0o600))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := s.d.client.Status(context.Background())
		if err == nil && len(st.Servers) == 1 && st.Servers[0].ReadScope == "server" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config not reloaded: %v %+v", err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := pip(); r.code != 0 {
		t.Errorf("read_scope = server: %s", r)
	}
}

// project writes a project directory with pyproject.toml (text, with
// SIMPLE and UPLOAD replaced) and returns it.
func (s *lockedSetup) project(t *testing.T, name, text string) string {
	t.Helper()
	dir := filepath.Join(s.u.home, name)
	must(t, os.MkdirAll(dir, 0o700))
	text = strings.NewReplacer("SIMPLE", strings.TrimSuffix(s.simple(), "/"), "UPLOAD", bed.locked+s.dev+"/").Replace(text)
	must(t, os.WriteFile(filepath.Join(dir, "pyproject.toml"), []byte(text), 0o600))
	return dir
}

// TestPoetry: poetry (the keyring library in its process, our backend
// installed beside it) locks, installs and publishes against the
// read-protected index with nothing but devpi-credd: it asks
// python-poetry-check and poetry-repository-NAME first (not ours, not
// refusals), then the URL.
func TestPoetry(t *testing.T) {
	s := newLockedSetup(t)
	dir := s.project(t, "poet", `[project]
name = "poet-pkg"
version = "1.0"
requires-python = ">=3.9"
dependencies = ["locked-pkg"]

[build-system]
requires = ["poetry-core>=2"]
build-backend = "poetry.core.masonry.api"

[[tool.poetry.source]]
name = "devpi"
url = "SIMPLE"
priority = "primary"
`)
	must(t, os.MkdirAll(filepath.Join(dir, "poet_pkg"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "poet_pkg", "__init__.py"), nil, 0o600))
	poetry := bed.py("poetry", "poetry")
	env := []string{"POETRY_VIRTUALENVS_IN_PROJECT=true", "POETRY_NO_INTERACTION=1", "POETRY_CACHE_DIR=" + filepath.Join(s.u.home, "poetry-cache")}
	mark := s.mark(t)
	for _, args := range [][]string{{"lock"}, {"install", "--no-root"}} {
		cmd := append([]string{"-C", dir}, args...)
		if r := s.run(t, env, poetry, cmd...); r.code != 0 {
			t.Fatalf("poetry %s: %s", strings.Join(args, " "), r)
		}
	}
	if r := s.run(t, nil, filepath.Join(dir, ".venv", "bin", "python"), "-c", "import locked_pkg"); r.code != 0 {
		t.Errorf("locked-pkg is not installed in poetry's environment: %s", r)
	}
	s.minted(t, mark, "python", strings.TrimSuffix(s.simple(), "/"), "read", "allowed=pkg_read", "indexes="+s.dev)

	// Publish what is in dist/ to the upload URL, as repository "devpi".
	must(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o700))
	s.u.run(t, "", bed.py("client", "python"), bed.mkwheel, "poet-pkg", "1.0", filepath.Join(dir, "dist"))
	if r := s.run(t, env, poetry, "-C", dir, "config", "repositories.devpi", bed.locked+s.dev+"/"); r.code != 0 {
		t.Fatalf("poetry config: %s", r)
	}
	mark = s.mark(t)
	if r := s.run(t, env, poetry, "-C", dir, "publish", "-r", "devpi"); r.code != 0 {
		t.Fatalf("poetry publish: %s", r)
	}
	s.minted(t, mark, "python", bed.locked+s.dev+"/", "upload", "allowed=upload", "indexes="+s.dev)
	s.notRefused(t, mark)
}

// notRefused: after mark, the audit log has no refusal (poetry's and
// pdm's repository-name lookups are not ours, and not refusals).
func (s *lockedSetup) notRefused(t *testing.T, mark int) {
	t.Helper()
	for _, l := range s.audit(t)[mark:] {
		if l.Event != "mint" {
			t.Errorf("a %s line in the audit log: %+v", l.Event, l)
		}
	}
}

// TestPDM: pdm (without the keyring library: it runs the keyring command
// line, our link on PATH) locks, installs and publishes.
func TestPDM(t *testing.T) {
	s := newLockedSetup(t)
	dir := s.project(t, "pdmproj", `[project]
name = "pdm-pkg"
version = "1.0"
requires-python = ">=3.9"
dependencies = ["locked-pkg"]

[tool.pdm]
distribution = false

[[tool.pdm.source]]
name = "pypi"
url = "SIMPLE"
`)
	pdm := bed.py("pdm", "pdm")
	env := []string{"PDM_HOME=" + filepath.Join(s.u.home, "pdm-home"), "PDM_CACHE_DIR=" + filepath.Join(s.u.home, "pdm-cache"),
		"PDM_CHECK_UPDATE=false", "PDM_NON_INTERACTIVE=1"}
	mark := s.mark(t)
	if r := s.runIn(t, dir, env, pdm, "venv", "create", bed.py("client", "python")); r.code != 0 {
		t.Fatalf("pdm venv create: %s", r)
	}
	if r := s.runIn(t, dir, env, pdm, "install"); r.code != 0 {
		t.Fatalf("pdm install: %s", r)
	}
	if r := s.run(t, nil, filepath.Join(dir, ".venv", "bin", "python"), "-c", "import locked_pkg"); r.code != 0 {
		t.Errorf("locked-pkg is not installed in pdm's environment: %s", r)
	}
	s.minted(t, mark, "devpi-credd-keyring", s.simple(), "read", "allowed=pkg_read", "indexes="+s.dev)

	must(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o700))
	s.u.run(t, "", bed.py("client", "python"), bed.mkwheel, "pdm-pkg", "1.0", filepath.Join(dir, "dist"))
	mark = s.mark(t)
	if r := s.runIn(t, dir, env, pdm, "publish", "--no-build", "-r", bed.locked+s.dev+"/"); r.code != 0 {
		t.Fatalf("pdm publish: %s", r)
	}
	s.minted(t, mark, "devpi-credd-keyring", bed.locked+s.dev+"/", "upload", "allowed=upload", "indexes="+s.dev)
	s.notRefused(t, mark)
}

//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// publisherSetup is a user whose daemon runs the trusted-publishing
// exchange for a test issuer (its own https server; its certificate
// reaches devpi-credd through SSL_CERT_FILE), behind the test bed's nginx.
type publisherSetup struct {
	u       *user
	root    *token.Token
	release string // the index the publisher may upload to
	other   string
	issuer  *testissuer.Issuer
	caFile  string
	d       *daemonProc
	listen  string
}

// newPublisher sets up the exchange: listen is its address, extra more
// config for the [exchange] table; its publisher may upload to the
// release index, any project.
func newPublisher(t *testing.T, listen, extra string) *publisherSetup {
	return setupPublisher(t, listen, "devpi-e2e", extra, "any_project = true")
}

// setupPublisher: a user with a release and an other index, a test
// issuer, and an [exchange] for audience whose one publisher trusts the
// issuer's org/repo tags for the release index, scoped further by scope.
func setupPublisher(t *testing.T, listen, audience, extra, scope string) *publisherSetup {
	t.Helper()
	u, root := setupDaemonUser(t)
	s := &publisherSetup{u: u, root: root, release: u.newIndex(t, "release"), other: u.newIndex(t, "other"), listen: listen}
	is, err := testissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	s.issuer = is
	s.caFile = u.writeFile(t, "issuer-ca.pem", string(is.CertPEM))
	s.appendConfig(t, fmt.Sprintf(`
[exchange]
listen = %q
audience = %q
%s

[[exchange.publishers]]
name = "release"
server = "local"
issuer = %q
indexes = [%q]
%s
claims = { repository = "org/repo", repository_owner_id = "4242", ref = "refs/tags/v*" }
`, listen, audience, extra, is.URL, s.release, scope))
	return s
}

func (s *publisherSetup) appendConfig(t *testing.T, text string) {
	t.Helper()
	config := filepath.Join(s.u.home, ".config", "devpi-credd", "config.toml")
	must(t, os.WriteFile(config, []byte(readFile(t, config)+text), 0o600))
}

func (s *publisherSetup) serve(t *testing.T) {
	t.Helper()
	s.d = s.u.serve(t, "SSL_CERT_FILE="+s.caFile)
}

// mintResult is the exchange's answer: PyPI's success or error body.
type mintResult struct {
	Status   int
	Success  bool   `json:"success"`
	Token    string `json:"token"`
	Username string `json:"username"`
	Expires  int64  `json:"expires"`
	Message  string `json:"message"`
	Errors   []struct {
		Code        string `json:"code"`
		Description string `json:"description"`
	} `json:"errors"`
}

func (m mintResult) codes() []string {
	var out []string
	for _, e := range m.Errors {
		out = append(out, e.Code)
	}
	return out
}

// mint posts body to the exchange at base with curl, the body on standard
// input (never on curl's command line); more are more curl arguments.
func (s *publisherSetup) mint(t *testing.T, base, body string, more ...string) mintResult {
	t.Helper()
	args := append([]string{"-sS", "--max-time", "60", "-X", "POST", "-H", "Content-Type: application/json",
		"--data-binary", "@-", "-w", "\n%{http_code}"}, more...)
	r := s.u.run(t, body, "curl", append(args, strings.TrimSuffix(base, "/")+"/_/oidc/mint-token")...)
	if r.code != 0 {
		t.Fatalf("curl: %s", r)
	}
	text := strings.TrimSpace(r.stdout)
	cut := strings.LastIndex(text, "\n")
	var m mintResult
	if err := json.Unmarshal([]byte(text[:cut]), &m); err != nil {
		t.Fatalf("the exchange's answer is not JSON: %s", r)
	}
	fmt.Sscan(text[cut+1:], &m.Status)
	return m
}

func jwtBody(jwt string) string {
	b, _ := json.Marshal(map[string]string{"token": jwt})
	return string(b)
}

// audit is the daemon's audit log, line by line.
func (s *publisherSetup) audit(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(s.u.home, ".local", "state", "devpi-credd", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestTrustedPublishing: through nginx, an identity token of the test
// issuer buys a token that twine uploads with to the publisher's index,
// and only there; exec --oidc in a GitHub-Actions-shaped job does the same
// with nothing stored; every bad identity token is refused with its own
// code and an audit line.
func TestTrustedPublishing(t *testing.T) {
	s := newPublisher(t, fmt.Sprintf("127.0.0.1:%d", bed.exchangePort), `trusted_proxies = ["127.0.0.1"]`)
	s.serve(t)
	is := s.issuer

	// The audience, then an exchange, through the proxy.
	r := s.u.run(t, "", "curl", "-sS", "--fail", bed.locked+"_/oidc/audience")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"audience":"devpi-e2e"}` {
		t.Fatalf("audience: %s", r)
	}
	jwt := is.Sign(map[string]any{"aud": "devpi-e2e"})
	m := s.mint(t, bed.locked, jwtBody(jwt))
	if m.Status != 200 || !m.Success || m.Username != s.u.name || !strings.HasPrefix(m.Token, "devpi-") {
		t.Fatalf("the exchange: %+v", m)
	}
	if d := time.Until(time.Unix(m.Expires, 0)); d > 15*time.Minute || d < 14*time.Minute {
		t.Errorf("expires in %s, want max_ttl 15m", d)
	}
	tok := parseToken(t, m.Token)
	mustUpload(t, s.u.twineUpload(t, s.release, tok, s.u.wheel(t, "tp-pkg", "1.0")))
	mustRefuse(t, s.u.twineUpload(t, s.other, tok, s.u.wheel(t, "tp-pkg", "1.1")), "Token denied access to index '"+s.other+"'")

	// Refusals: each its own code, PyPI's body, no token.
	now := time.Now()
	aud := map[string]any{"aud": "devpi-e2e"}
	with := func(extra map[string]any) map[string]any {
		out := map[string]any{"aud": "devpi-e2e"}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	mark := len(s.audit(t))
	cases := []struct{ name, body, code string }{
		{"another repository", jwtBody(is.Sign(with(map[string]any{"repository": "org/evil"}))), "invalid-publisher"},
		{"another ref", jwtBody(is.Sign(with(map[string]any{"ref": "refs/heads/main"}))), "invalid-publisher"},
		{"wrong audience", jwtBody(is.Sign(map[string]any{"aud": "pypi"})), "invalid-audience"},
		{"expired", jwtBody(is.Sign(with(map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix()}))), "expired-token"},
		{"not yet valid", jwtBody(is.Sign(with(map[string]any{"nbf": now.Add(time.Hour).Unix()}))), "not-yet-valid"},
		{"an unknown key", jwtBody(is.SignUnknownKey(aud)), "invalid-signature"},
		{"alg none", jwtBody(is.SignNone(aud)), "invalid-token"},
		{"HMAC with the public key", jwtBody(is.SignHMACWithPublicKey(aud)), "invalid-token"},
		{"an issuer no publisher names", jwtBody(is.Sign(with(map[string]any{"iss": "https://elsewhere.example"}))), "unknown-issuer"},
		{"replayed", jwtBody(jwt), "invalid-reuse-token"},
		{"garbage", jwtBody("garbage"), "invalid-token"},
		{"not JSON", "garbage", "invalid-payload"},
	}
	for _, c := range cases {
		m := s.mint(t, bed.locked, c.body)
		if m.Status/100 != 4 || m.Success || m.Token != "" || len(m.Errors) == 0 || m.Errors[0].Code != c.code || !strings.HasPrefix(m.Message, "Token request failed: ") {
			t.Errorf("%s: %+v, want %s", c.name, m, c.code)
		}
	}
	lines := s.audit(t)[mark:]
	if len(lines) != len(cases) {
		t.Fatalf("%d audit lines for %d refusals: %v", len(lines), len(cases), lines)
	}
	for i, c := range cases {
		codes, _ := lines[i]["codes"].([]any)
		if lines[i]["event"] != "refuse" || len(codes) == 0 || codes[0] != c.code || lines[i]["remote"] != "127.0.0.1" {
			t.Errorf("%s: audit line %v", c.name, lines[i])
		}
	}
	// Behind nginx (a trusted proxy) the line names the caller, and not
	// what it claims to be: from another loopback address, and from the
	// proxy's own (which a trusted proxy's header could not tell apart,
	// had nginx passed on what the caller sent).
	for _, from := range []struct{ addr, via string }{{"127.0.0.2", "127.0.0.1"}, {"127.0.0.1", ""}} {
		mark = len(s.audit(t))
		if m := s.mint(t, bed.locked, "garbage", "--interface", from.addr, "-H", "X-Forwarded-For: 203.0.113.9"); m.Status != 400 {
			t.Fatalf("from %s: %+v", from.addr, m)
		}
		lines := s.audit(t)[mark:]
		if len(lines) != 1 {
			t.Fatalf("from %s: %d audit lines: %v", from.addr, len(lines), lines)
		}
		if via, _ := lines[0]["via"].(string); lines[0]["remote"] != from.addr || via != from.via {
			t.Errorf("the caller behind the proxy: audit lines %v, want remote %s via %q", lines, from.addr, from.via)
		}
	}

	// exec --oidc in a GitHub Actions job: no token file, no token
	// variable; the identity comes from the job's token service.
	home := t.TempDir()
	env := []string{
		"HOME=" + home, "PATH=" + filepath.Dir(bed.py("client", "python")) + ":/usr/local/bin:/usr/bin:/bin",
		"PYTHON_KEYRING_BACKEND=", "DEVPI_CLIENTDIR=", "COLUMNS=1000", "NO_COLOR=1",
		"GITHUB_ACTIONS=true", "ACTIONS_ID_TOKEN_REQUEST_URL=" + is.TokenURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + is.RequestToken,
		"SSL_CERT_FILE=" + s.caFile,
	}
	// The exchange's audience is not its host name (127.0.0.1): the job
	// asks for its host name unless told, and gets nothing.
	r = s.u.runEnv(t, env, "", bed.bin, "exec", "--oidc", "--url", bed.locked, "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, `names the audience "devpi-e2e", this job asks for "127.0.0.1"`) {
		t.Errorf("exec --oidc without --audience: %s", r)
	}
	whl := s.u.wheel(t, "tp-pkg", "2.0")
	r = s.u.runEnv(t, env, "", bed.bin, "exec", "--oidc", "--audience", "devpi-e2e", "--url", bed.locked, "--",
		"sh", "-c", `env; twine upload --non-interactive --disable-progress-bar --repository-url "$1" "$2"`, "sh", bed.locked+s.release+"/", whl)
	if r.code != 0 || !strings.Contains(r.stderr, "traded the identity token from GitHub Actions") {
		t.Fatalf("exec --oidc twine upload: %s", r)
	}
	if strings.Contains(r.stdout, "devpi-") && strings.Contains(r.stdout, "=devpi-") {
		t.Errorf("a token in the job's environment: %s", r.stdout)
	}
	var links struct {
		Result map[string]any `json:"result"`
	}
	if err := bed.api("GET", s.release+"/tp-pkg/2.0", s.u.name+":"+s.u.password, nil, &links); err != nil || links.Result == nil {
		t.Errorf("the upload did not land: %v", err)
	}
	// The same job without id-token: write: one line, exit 2.
	r = s.u.runEnv(t, append(env, "ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN="), "", bed.bin, "exec", "--oidc", "--url", bed.locked, "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, "permissions: id-token: write") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("exec --oidc without an identity: %s", r)
	}

	// env --oidc in a GitLab-shaped job: the identity token is an
	// id_tokens: entry, passed as DEVPI_CREDD_ID_TOKEN.
	gl := append(env, "ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=", "GITHUB_ACTIONS=", "GITLAB_CI=true",
		"DEVPI_CREDD_ID_TOKEN="+is.Sign(map[string]any{"aud": "devpi-e2e"}))
	r = s.u.runEnv(t, gl, "", bed.bin, "env", "--oidc", "--audience", "devpi-e2e", "--url", bed.locked, "-i", s.release, "--format", "dotenv")
	if r.code != 0 || !strings.Contains(r.stderr, "traded the identity token from $DEVPI_CREDD_ID_TOKEN") {
		t.Fatalf("env --oidc: %s", r)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars[k] = v
	}
	if vars["TWINE_USERNAME"] != s.u.name || vars["TWINE_REPOSITORY_URL"] != bed.locked+s.release+"/" {
		t.Errorf("env --oidc printed %v", vars)
	}
	envTok := parseToken(t, vars["TWINE_PASSWORD"])
	mustUpload(t, s.u.twineUpload(t, s.release, envTok, s.u.wheel(t, "tp-pkg", "3.0")))

	// exec --oidc in a GitLab job with the conventional variable, named
	// after the audience: read, and gone from the child's environment.
	glJWT := is.Sign(map[string]any{"aud": "devpi-e2e"})
	gl = append(env, "ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=", "GITHUB_ACTIONS=", "GITLAB_CI=true", "DEVPI_E2E_ID_TOKEN="+glJWT)
	r = s.u.runEnv(t, gl, "", bed.bin, "exec", "--oidc", "--audience", "devpi-e2e", "--url", bed.locked, "--", "env")
	if r.code != 0 || !strings.Contains(r.stderr, "traded the identity token from $DEVPI_E2E_ID_TOKEN") || strings.Contains(r.stdout, glJWT) {
		t.Errorf("exec --oidc with $DEVPI_E2E_ID_TOKEN: %s", r)
	}
	// A Buildkite-shaped job: the agent's command prints a token for the
	// audience it is told, and twine uploads with what it was traded for.
	bkJWT := s.u.writeFile(t, "buildkite.jwt", is.Sign(map[string]any{"aud": "devpi-e2e"}))
	bk := append(env, "ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=", "GITHUB_ACTIONS=", "BUILDKITE=true")
	r = s.u.runEnv(t, bk, "", bed.bin, "exec", "--oidc", "--audience", "devpi-e2e", "--url", bed.locked,
		"--id-token-command", `test "$DEVPI_CREDD_AUDIENCE" = devpi-e2e && cat `+bkJWT, "--",
		"twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", bed.locked+s.release+"/", s.u.wheel(t, "tp-pkg", "4.0"))
	if r.code != 0 || !strings.Contains(r.stderr, "traded the identity token from --id-token-command") {
		t.Errorf("exec --oidc --id-token-command: %s", r)
	}

	s.d.stop(t)
	all := strings.Join(func() []string {
		var out []string
		for _, l := range s.audit(t) {
			b, _ := json.Marshal(l)
			out = append(out, string(b))
		}
		return out
	}(), "\n")
	noSecret(t, result{stdout: all + s.d.logs.String()}, tok)
	noSecret(t, result{stdout: all + s.d.logs.String()}, s.root)
	if strings.Contains(all+s.d.logs.String(), strings.Split(jwt, ".")[2][:24]) {
		t.Error("the identity token is in the audit log or the daemon's log")
	}
	if !strings.Contains(all, `"event":"exchange"`) || !strings.Contains(all, `"repository":"org/repo"`) || !strings.Contains(all, `"run_id":"987654321"`) {
		t.Errorf("no exchange line with the claims: %s", all)
	}
}

// TestTrustedPublishingExpiry: a minted token lives max_ttl, and devpi
// refuses it after that.
func TestTrustedPublishingExpiry(t *testing.T) {
	port, err := freePort()
	must(t, err)
	s := newPublisher(t, fmt.Sprintf("127.0.0.1:%d", port), `max_ttl = "15s"`)
	s.serve(t)
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	m := s.mint(t, base, jwtBody(s.issuer.Sign(map[string]any{"aud": "devpi-e2e"})))
	if m.Status != 200 {
		t.Fatalf("the exchange: %+v", m)
	}
	tok := parseToken(t, m.Token)
	if exp := tok.Scope().Expires; exp == nil || exp.Unix() != m.Expires || time.Until(*exp) > 15*time.Second {
		t.Fatalf("the token expires at %v, the answer says %d", exp, m.Expires)
	}
	mustUpload(t, s.u.twineUpload(t, s.release, tok, s.u.wheel(t, "tp-exp", "1.0")))
	for time.Now().Before(time.Unix(m.Expires+1, 0)) {
		time.Sleep(100 * time.Millisecond)
	}
	mustRefuse(t, s.u.twineUpload(t, s.release, tok, s.u.wheel(t, "tp-exp", "1.1")), "Token expired at")
}

// TestTrustedPublishingIssuerDown: with the issuer gone the exchange keeps
// verifying with the keys it has; for an issuer it never reached it says
// why it cannot verify.
func TestTrustedPublishingIssuerDown(t *testing.T) {
	port, err := freePort()
	must(t, err)
	s := newPublisher(t, fmt.Sprintf("127.0.0.1:%d", port), "")
	gone, err := testissuer.Start("127.0.0.1:0")
	must(t, err)
	gone.Stop()
	s.appendConfig(t, fmt.Sprintf(`
[[exchange.publishers]]
name = "gone"
server = "local"
issuer = %q
indexes = [%q]
any_project = true
claims = { repository = "org/repo" }
`, gone.URL, s.release))
	s.serve(t)
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if m := s.mint(t, base, jwtBody(s.issuer.Sign(map[string]any{"aud": "devpi-e2e"}))); m.Status != 200 {
		t.Fatalf("before: %+v", m)
	}
	s.issuer.Stop()
	m := s.mint(t, base, jwtBody(s.issuer.Sign(map[string]any{"aud": "devpi-e2e"})))
	if m.Status != 200 {
		t.Fatalf("the issuer down, its keys cached: %+v", m)
	}
	mustUpload(t, s.u.twineUpload(t, s.release, parseToken(t, m.Token), s.u.wheel(t, "tp-down", "1.0")))
	m = s.mint(t, base, jwtBody(gone.Sign(map[string]any{"aud": "devpi-e2e"})))
	if m.Status != 503 || strings.Join(m.codes(), ",") != "unavailable" || !strings.Contains(m.Message, "discovery document cannot be fetched") {
		t.Errorf("an issuer never reached: %+v", m)
	}
	if _, err := s.d.client.Status(t.Context()); err != nil {
		t.Errorf("the daemon stopped answering: %v", err)
	}
}

package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// What a second review of the exchange found, each reproduced.

// A workflow file named "release.yml@evil.yml" is not release.yml.
func TestWorkflowFileWithAt(t *testing.T) {
	f := newFixture(t, nil)
	for _, ref := range []string{
		"org/repo/.github/workflows/release.yml@evil.yml@refs/tags/v1.0",
		"org/repo/.github/workflows/release.yml@refs/heads/main", // not the token's ref or sha
		"org/repo/.github/workflows/sub/release.yml@refs/tags/v1.0",
	} {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "job_workflow_ref": ref}))); status == 200 {
			t.Errorf("job_workflow_ref %s passed as release.yml", ref)
		} else if codes[0] != CodeInvalidPublisher {
			t.Errorf("%s: %v", ref, codes)
		}
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi",
		"job_workflow_ref": "org/repo/.github/workflows/release.yml@0123456789abcdef0123456789abcdef01234567"}))); status != 200 {
		t.Errorf("a workflow pinned by the token's sha: %d %v", status, codes)
	}
}

// GitLab's pipeline file, from ci_config_ref_uri, in the token's project.
func TestCIConfigFile(t *testing.T) {
	for uri, want := range map[string]string{
		"gitlab.com/group/proj//.gitlab-ci.yml@refs/tags/v1":      ".gitlab-ci.yml",
		"gitlab.com/group/proj//ci/release.yml@refs/tags/v1":      "ci/release.yml",
		"gitlab.com/group/proj//.gitlab-ci.yml@refs/heads/main":   "",
		"gitlab.com/other/proj//.gitlab-ci.yml@refs/tags/v1":      "",
		"gitlab.com/x/group/proj//.gitlab-ci.yml@refs/tags/v1":    "",
		"gitlab.com/group/proj//a.yml@b.yml@refs/tags/v1":         "",
		"gitlab.com/group/proj//.gitlab-ci.yml@0123abcd":          ".gitlab-ci.yml",
		"gitlab.com/group/proj//.gitlab-ci.yml@refs/tags/v1extra": "",
	} {
		got := stringClaims(map[string]any{"project_path": "group/proj", "ref_path": "refs/tags/v1", "sha": "0123abcd", "ci_config_ref_uri": uri, "ci_config_file": "forged"})["ci_config_file"]
		if got != want {
			t.Errorf("%s: ci_config_file %q, want %q", uri, got, want)
		}
	}
}

// A key the issuer stopped publishing stops verifying once the cached
// set is older than keysMaxAge, even though the holder never sends an
// unknown key id.
func TestWithdrawnKeyStopsVerifying(t *testing.T) {
	f := newFixture(t, nil)
	// Tokens valid two hours from now, signed before the rotation.
	later := func() map[string]any {
		at := time.Now().Add(2 * time.Hour)
		return map[string]any{"aud": "devpi", "iat": at.Unix(), "nbf": at.Unix(), "exp": at.Add(5 * time.Minute).Unix()}
	}
	f.advance(0)
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Fatalf("before: %d %v", status, codes)
	}
	if err := f.issuer.Rotate(); err != nil {
		t.Fatal(err)
	}
	old := f.issuer.SignRetired(later())
	f.advance(2 * time.Hour)
	if status, _, codes := f.post(t, tokenBody(old)); status == 200 || codes[0] != CodeInvalidSignature {
		t.Errorf("a withdrawn key, the set two hours old: %d %v", status, codes)
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(later()))); status != 200 {
		t.Errorf("the new key: %d %v", status, codes)
	}
}

// Stale keys while the issuer is down still verify (availability); the
// refetch is tried again only after refetchEvery.
func TestStaleKeysIssuerDown(t *testing.T) {
	f := newFixture(t, nil)
	if status, _, _ := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Fatal("before")
	}
	at := time.Now().Add(2 * time.Hour)
	tok := f.issuer.Sign(map[string]any{"aud": "devpi", "iat": at.Unix(), "nbf": at.Unix(), "exp": at.Add(5 * time.Minute).Unix()})
	f.issuer.Stop()
	f.advance(2 * time.Hour)
	if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
		t.Errorf("stale keys, the issuer down: %d %v", status, codes)
	}
}

// A request whose verification waits on the issuer while a reload
// removes the exchange mints nothing.
func TestReloadDuringVerification(t *testing.T) {
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer is.Stop()
	limits, _ := token.ParseLimits([]string{"upload"}, []string{"team/release"}, nil)
	var cfg atomic.Pointer[config.Exchange]
	cfg.Store(&config.Exchange{Audience: "devpi", MaxTTL: 15 * time.Minute, Publishers: []config.Publisher{{
		Name: "release", Server: "local", Issuer: is.URL, Limits: limits, Claims: map[string]string{"repository": "org/repo"}}}})
	gate, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	base := is.Client()
	slow := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		once.Do(func() { close(entered); <-gate }) // the first discovery, slow
		return base.Transport.RoundTrip(r)
	})}
	m := &fakeMinter{}
	s := NewServer(Options{Verifier: &Verifier{HTTP: slow, Now: time.Now}, Replay: &MemoryReplay{}, Minter: m, Now: time.Now,
		Config: func() *config.Exchange { return cfg.Load() }, Audit: func(Event) error { return nil }})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	done := make(chan int)
	go func() {
		resp, err := http.Post(hs.URL+PathMintToken, "application/json", strings.NewReader(tokenBody(is.Sign(map[string]any{"aud": "devpi"}))))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	cfg.Store(nil)
	close(gate)
	if st := <-done; st != http.StatusNotFound || len(m.calls) != 0 {
		t.Errorf("after the reload removed the exchange: %d, %d mints", st, len(m.calls))
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// nbf, exp, iat that are not numbers are refused, not ignored.
func TestTimeClaimsMustBeNumbers(t *testing.T) {
	f := newFixture(t, nil)
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	for _, name := range []string{"nbf", "iat"} {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", name: future}))); status == 200 || codes[0] == "" {
			t.Errorf("%s as a string: %d %v", name, status, codes)
		}
	}
}

// The CI client: no plain http off this machine, no redirects, no PyPI
// audience.
func TestClientRefusesWhereTheTokenMustNotGo(t *testing.T) {
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer is.Stop()
	for _, raw := range []string{"http://devpi.example", "ftp://devpi.example", "https://u:p@devpi.example"} {
		u, _ := url.Parse(raw)
		if err := CheckBase(u); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
	for _, raw := range []string{"https://devpi.example", "http://127.0.0.1:8181", "http://[::1]:8181", "http://localhost:8181"} {
		u, _ := url.Parse(raw)
		if err := CheckBase(u); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	var got atomic.Value
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathAudience {
			_, _ = w.Write([]byte(`{"audience":"PyPI"}`))
			return
		}
		var body struct{ Token string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		got.Store(body.Token)
		_, _ = w.Write([]byte(`{"success":true,"token":"x","username":"u","expires":1}`))
	}))
	defer evil.Close()
	base, _ := url.Parse(evil.URL) // loopback http: allowed, but it names PyPI's audience
	env := map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": is.TokenURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": is.RequestToken}
	c := &Client{Base: base, HTTP: is.Client(), Getenv: func(k string) string { return env[k] }}
	if _, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "devpi"}); err == nil || !strings.Contains(err.Error(), "PyPI's audience") {
		t.Errorf("an exchange naming PyPI's audience: %v", err)
	}
	// An exchange that redirects the POST elsewhere: not followed.
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	rb, _ := url.Parse(redir.URL)
	c2 := &Client{Base: rb, HTTP: http.DefaultClient, Getenv: func(string) string { return "" }}
	if _, err := c2.Exchange(context.Background(), "A.JWT.VALUE"); err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("a redirect: %v", err)
	}
	if v, _ := got.Load().(string); v != "" {
		t.Errorf("the identity token reached where the redirect pointed")
	}
}

// A replay directory others can write, or a link, is refused: whoever can
// remove a record can replay its token.
func TestDirReplayChecksItsDirectory(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := (&DirReplay{Dir: open}).Use("x", time.Now().Add(time.Minute), time.Now()); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("a 0777 directory: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := (&DirReplay{Dir: link}).Use("x", time.Now().Add(time.Minute), time.Now()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a link: %v", err)
	}
	fresh := filepath.Join(dir, "new", "replay")
	if fresh, err := (&DirReplay{Dir: fresh}).Use("x", time.Now().Add(time.Minute), time.Now()); !fresh || err != nil {
		t.Errorf("a new directory: %v %v", fresh, err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("made with %v %v", st.Mode(), err)
	}
}

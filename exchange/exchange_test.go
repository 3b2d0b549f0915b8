package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

type fakeMinter struct {
	mu    sync.Mutex
	calls []config.Publisher
	err   error // what it fails with (setErr)
}

func (f *fakeMinter) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeMinter) MintExchange(_ context.Context, p config.Publisher, maxTTL time.Duration) (*Minted, *Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, nil, f.err
	}
	f.calls = append(f.calls, p)
	exp := time.Now().Add(maxTTL).Unix()
	// A real token, each its own (burn-token takes what was minted).
	root, err := token.New([]byte("0123456789abcdef0123456789abcdef"), "alice", "abcd2345")
	if err != nil {
		return nil, nil, err
	}
	tok, err := root.Derive(token.Expires(time.Unix(exp, 0)), token.NotBefore(time.Unix(int64(len(f.calls)), 0)))
	if err != nil {
		return nil, nil, err
	}
	return &Minted{Success: true, Token: tok.Reveal(), Username: "alice", Expires: exp},
		&Record{Server: p.Server, User: "alice", TokenID: "abcd2345", Caveats: []string{"allowed=upload"}, Expires: exp}, nil
}

type fixture struct {
	issuer *testissuer.Issuer
	url    string
	minter *fakeMinter
	mu     sync.Mutex
	events []Event
	audit  error
	skew   time.Duration // added to the clock the verifier reads
	cfg    atomic.Pointer[config.Exchange]
}

func (f *fixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Add(f.skew)
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skew += d
}

func newFixture(t *testing.T, replay Replay) *fixture {
	t.Helper()
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	limits, _ := token.ParseLimits([]string{"upload"}, []string{"team/release"}, nil)
	cfg := &config.Exchange{Audience: "devpi", MaxTTL: 15 * time.Minute, Publishers: []config.Publisher{{
		Name: "release", Server: "local", Issuer: is.URL, Provider: "github", Limits: limits, Budget: 3,
		Claims: map[string]string{"repository": "org/repo", "repository_owner_id": "4242", "workflow_file": "release.yml", "ref": "refs/tags/v*"},
	}}}
	f := &fixture{issuer: is, minter: &fakeMinter{}}
	f.cfg.Store(cfg)
	f.serve(t, replay)
	return f
}

// newFixtureFor is a replica of f: another server (its own config,
// budgets, minter and audit) trusting f's issuer, with replay.
func newFixtureFor(t *testing.T, f *fixture, replay Replay) *fixture {
	t.Helper()
	g := &fixture{issuer: f.issuer, minter: &fakeMinter{}}
	cfg := *f.cfg.Load()
	g.cfg.Store(&cfg)
	g.serve(t, replay)
	return g
}

func (f *fixture) serve(t *testing.T, replay Replay) {
	t.Helper()
	is := f.issuer
	if replay == nil {
		replay = &MemoryReplay{}
	}
	s := NewServer(Options{
		Verifier: &Verifier{HTTP: is.Client(), Now: f.now},
		Replay:   replay, Minter: f.minter, Now: f.now,
		Config: f.cfg.Load,
		Audit: func(e Event) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.events = append(f.events, e)
			if e.Refused == nil {
				return f.audit
			}
			return nil
		},
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	f.url = srv.URL
}

// post sends body to mint-token and returns the status, the minted token
// and the refusal's codes.
func (f *fixture) post(t *testing.T, body string) (int, *Minted, []string) {
	t.Helper()
	resp, err := http.Post(f.url+PathMintToken, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode == http.StatusOK {
		var m Minted
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, &m, nil
	}
	var rf Refusal
	if err := json.Unmarshal(raw, &rf); err != nil || rf.Message == "" {
		t.Fatalf("a refusal without PyPI's body: %s", raw)
	}
	if bytes.Contains(raw, []byte("devpi-")) {
		t.Fatalf("a refusal holds a token: %s", raw)
	}
	return resp.StatusCode, nil, rf.Codes()
}

// burn posts body to burn-token.
func (f *fixture) burn(t *testing.T, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(f.url+PathBurnToken, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// reported is f's reported_used events.
func (f *fixture) reported() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Event
	for _, e := range f.events {
		if e.Reported != nil {
			out = append(out, e)
		}
	}
	return out
}

func tokenBody(jwt string) string {
	b, _ := json.Marshal(map[string]string{"token": jwt})
	return string(b)
}

func TestAudience(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.url + PathAudience)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out["audience"] != "devpi" {
		t.Errorf("audience: %v %v", out, err)
	}
}

// Every check refuses with its own code, a PyPI body, no token, and an
// audit event; the good token is minted once.
func TestExchangeChecks(t *testing.T) {
	f := newFixture(t, nil)
	is := f.issuer
	good := is.Sign(map[string]any{"aud": "devpi"})
	status, m, codes := f.post(t, tokenBody(good))
	if status != 200 || m == nil || !m.Success || !strings.HasPrefix(m.Token, token.Prefix) || m.Username != "alice" || m.Expires == 0 {
		t.Fatalf("a good token: %d %+v %v", status, m, codes)
	}
	if status, m, _ := f.post(t, tokenBody(is.SignES256(map[string]any{"aud": "devpi"}))); status != 200 || m == nil {
		t.Errorf("an ES256 token: %d", status)
	}
	now := time.Now()
	for _, tt := range []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"replayed", tokenBody(good), 422, CodeReused},
		{"another repository", tokenBody(is.Sign(map[string]any{"aud": "devpi", "repository": "org/evil"})), 422, CodeInvalidPublisher},
		{"another ref", tokenBody(is.Sign(map[string]any{"aud": "devpi", "ref": "refs/heads/main"})), 422, CodeInvalidPublisher},
		{"another workflow", tokenBody(is.Sign(map[string]any{"aud": "devpi", "job_workflow_ref": "org/repo/.github/workflows/ci.yml@refs/tags/v1.0"})), 422, CodeInvalidPublisher},
		{"a workflow of another repository", tokenBody(is.Sign(map[string]any{"aud": "devpi", "job_workflow_ref": "evil/x/.github/workflows/release.yml@refs/tags/v1.0"})), 422, CodeInvalidPublisher},
		{"a workflow_file claim of its own", tokenBody(is.Sign(map[string]any{"aud": "devpi", "job_workflow_ref": "", "workflow_file": "release.yml"})), 422, CodeInvalidPublisher},
		{"wrong audience", tokenBody(is.Sign(map[string]any{"aud": "pypi"})), 422, CodeInvalidAudience},
		{"expired", tokenBody(is.Sign(map[string]any{"aud": "devpi", "exp": now.Add(-time.Hour).Unix()})), 422, CodeExpired},
		{"not yet valid", tokenBody(is.Sign(map[string]any{"aud": "devpi", "nbf": now.Add(time.Hour).Unix()})), 422, CodeNotYetValid},
		{"unknown key", tokenBody(is.SignUnknownKey(map[string]any{"aud": "devpi"})), 422, CodeInvalidSignature},
		{"alg none", tokenBody(is.SignNone(map[string]any{"aud": "devpi"})), 422, CodeInvalidToken},
		{"HMAC with the public key", tokenBody(is.SignHMACWithPublicKey(map[string]any{"aud": "devpi"})), 422, CodeInvalidToken},
		{"unknown issuer", tokenBody(is.Sign(map[string]any{"aud": "devpi", "iss": "https://elsewhere.example"})), 422, CodeUnknownIssuer},
		{"garbage", tokenBody("not.a.jwt"), 422, CodeInvalidToken},
		{"not JSON", "garbage", 400, CodeInvalidPayload},
		{"two tokens", `{"token": "a", "token": "b"}`, 400, CodeInvalidPayload},
		{"over 64 KiB", tokenBody(strings.Repeat("a", 64<<10)), 400, CodeInvalidPayload},
	} {
		status, m, codes := f.post(t, tt.body)
		if status != tt.status || m != nil || len(codes) == 0 || codes[0] != tt.code {
			t.Errorf("%s: %d %v, want %d %s", tt.name, status, codes, tt.status, tt.code)
		}
	}
	// One problem per failed check.
	_, _, codes = f.post(t, tokenBody(is.Sign(map[string]any{"aud": "pypi", "exp": now.Add(-time.Hour).Unix()})))
	if strings.Join(codes, " ") != CodeInvalidAudience+" "+CodeExpired {
		t.Errorf("two failed checks: %v", codes)
	}
	// Claims that do not match: one generic reason for the caller (no
	// oracle of what is configured), each claim in the audit's detail.
	resp, err := http.Post(f.url+PathMintToken, "application/json", strings.NewReader(tokenBody(is.Sign(map[string]any{"aud": "devpi", "repository_owner_id": 17, "ref": "refs/heads/x"}))))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rf Refusal
	_ = json.Unmarshal(answer, &rf)
	if strings.Join(rf.Codes(), ",") != CodeInvalidPublisher || strings.Contains(string(answer), "ref") || strings.Contains(string(answer), "release") {
		t.Errorf("claims that do not match: the caller is told %s", answer)
	}
	f.mu.Lock()
	last := f.events[len(f.events)-1]
	f.mu.Unlock()
	if last.Refused == nil || !strings.Contains(last.Reason, `repository_owner_id "17"`) || !strings.Contains(last.Reason, `ref "refs/heads/x"`) || !strings.Contains(last.Reason, "release: ") {
		t.Errorf("the audit event does not say which claims failed: %+v", last)
	}
	if len(f.minter.calls) != 2 {
		t.Errorf("%d tokens minted, want 2", len(f.minter.calls))
	}
	// An audit event for each, with where the token came from and never
	// the token.
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != 21 {
		t.Errorf("%d audit events for 21 exchanges", len(f.events))
	}
	if e := f.events[0]; e.Publisher != "release" || e.Minted == nil || e.Claims["repository"] != "org/repo" || e.Claims["sha"] == "" || e.Claims["workflow_file"] != "release.yml" {
		t.Errorf("the minted exchange's event: %+v", e)
	}
	all, _ := json.Marshal(f.events)
	if strings.Contains(string(all), good) || strings.Contains(string(all), token.Prefix) {
		t.Error("an audit event holds the identity token or the minted token")
	}
}

// A publisher's budget: past it, 429.
func TestBudget(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 4 {
		status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"})))
		if want := map[bool]int{true: 200, false: 429}[i < 3]; status != want {
			t.Errorf("exchange %d: %d %v, want %d", i, status, codes, want)
		}
	}
}

// A token that cannot be recorded is not handed out.
func TestAuditFailureHandsOutNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.audit = errors.New("no space left on device")
	status, m, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"})))
	if status != 503 || m != nil || codes[0] != CodeUnavailable {
		t.Errorf("%d %+v %v", status, m, codes)
	}
}

// The issuer down: cached keys keep verifying; a key id that is not
// cached cannot be looked up, and the refusal says so (503), as it does
// for an issuer whose discovery document was never fetched.
func TestIssuerDown(t *testing.T) {
	f := newFixture(t, nil)
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Fatalf("before: %d %v", status, codes)
	}
	f.issuer.Stop()
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Errorf("the issuer down, a cached key: %d %v", status, codes)
	}
	// Within refetchEvery of the last fetch, an unknown key id is not
	// looked up again: the keys just fetched did not have it.
	status, _, codes := f.post(t, tokenBody(f.issuer.SignUnknownKey(map[string]any{"aud": "devpi"})))
	if status != 422 || codes[0] != CodeInvalidSignature {
		t.Errorf("the issuer down, an unknown key just after a fetch: %d %v", status, codes)
	}
	f.advance(refetchEvery + time.Second)
	status, _, codes = f.post(t, tokenBody(f.issuer.SignUnknownKey(map[string]any{"aud": "devpi"})))
	if status != 503 || codes[0] != CodeUnavailable {
		t.Errorf("the issuer down, an uncached key: %d %v", status, codes)
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Errorf("the issuer down, a cached key after a failed fetch: %d %v", status, codes)
	}
	g := newFixture(t, nil)
	g.issuer.Stop()
	status, _, codes = g.post(t, tokenBody(g.issuer.Sign(map[string]any{"aud": "devpi"})))
	if status != 503 || codes[0] != CodeUnavailable {
		t.Errorf("never reached: %d %v", status, codes)
	}
}

// Replicas sharing a directory: a token used at one is refused at the
// other.
func TestDirReplayAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	a, b := &DirReplay{Dir: dir}, &DirReplay{Dir: dir}
	now := time.Now()
	if fresh, err := a.Use("iss jti-1", now.Add(time.Minute), now); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	if fresh, _ := b.Use("iss jti-1", now.Add(time.Minute), now); fresh {
		t.Error("the other replica took a used token")
	}
	// Once expired, the record goes.
	if fresh, _ := b.Use("iss jti-1", now.Add(time.Minute), now.Add(time.Hour)); !fresh {
		t.Error("an expired record still refuses")
	}
	m := &MemoryReplay{}
	if fresh, _ := m.Use("x", now.Add(time.Minute), now); !fresh {
		t.Error("memory: first use")
	}
	if fresh, _ := m.Use("x", now.Add(time.Minute), now); fresh {
		t.Error("memory: a replay")
	}
}

// The CI side against the exchange: audience, GitHub Actions' token
// service, the exchange.
func TestClient(t *testing.T) {
	f := newFixture(t, nil)
	base, _ := url.Parse(f.url)
	env := map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": f.issuer.TokenURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": f.issuer.RequestToken}
	c := &Client{Base: base, HTTP: f.issuer.Client(), Getenv: func(k string) string { return env[k] }}
	ctx := context.Background()
	aud, err := c.Audience(ctx)
	if err != nil || aud != "devpi" {
		t.Fatalf("audience: %q %v", aud, err)
	}
	if _, _, err := c.IDToken(ctx, IDTokenRequest{}); !errors.Is(err, ErrAudience) {
		t.Fatalf("the exchange's audience is not its host name, and no --audience: %v", err)
	}
	jwt, source, err := c.IDToken(ctx, IDTokenRequest{Audience: "devpi"})
	if err != nil || source != "GitHub Actions" {
		t.Fatalf("IDToken: %q %v", source, err)
	}
	m, err := c.Exchange(ctx, jwt)
	if err != nil || !strings.HasPrefix(m.Token, token.Prefix) {
		t.Fatalf("Exchange: %+v %v", m, err)
	}
	if _, err := c.Exchange(ctx, jwt); err == nil || !strings.Contains(err.Error(), "exchanged before") {
		t.Errorf("a replay through the client: %v", err)
	}
	c.Getenv = func(string) string { return "" }
	if _, _, err := c.IDToken(ctx, IDTokenRequest{Audience: "devpi"}); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("outside CI: %v", err)
	}
}

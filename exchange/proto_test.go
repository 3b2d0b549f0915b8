package exchange

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/token"
)

// What the third review found, each reproduced; and PyPI's behaviour
// where it is stricter.

// Hole 3: the replay directory's name swapped for another between two
// uses of one token: the second is still refused, since records are made
// relative to the directory opened (and checked) once.
func TestDirReplaySwappedDirectory(t *testing.T) {
	for _, swap := range []struct {
		name string
		do   func(t *testing.T, dir, decoy string)
	}{
		{"rename", func(t *testing.T, dir, decoy string) {
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(decoy, dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"exchange", exchangeNames},
	} {
		t.Run(swap.name, func(t *testing.T) {
			base := t.TempDir()
			dir, decoy := filepath.Join(base, "replay"), filepath.Join(base, "decoy")
			for _, d := range []string{dir, decoy} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			r := &DirReplay{Dir: dir}
			now := time.Now()
			if fresh, err := r.Use("iss jti-1", now.Add(time.Minute), now); !fresh || err != nil {
				t.Fatalf("first use: %v %v", fresh, err)
			}
			swap.do(t, dir, decoy)
			if fresh, err := r.Use("iss jti-1", now.Add(time.Minute), now); fresh || err != nil {
				t.Errorf("the second use, after the directory's name was swapped: fresh %v, %v", fresh, err)
			}
		})
	}
}

// Hole 3: a parent that others can write lets them swap names before the
// directory is opened (and replicas open different ones): refused at
// start. A sticky parent (as /tmp) is no better as replay_dir's own: in
// it, another uid can make replay_dir's name first, and the daemon then
// refuses to start ("belongs to uid ..."). Higher up, a sticky directory
// is fine: another uid cannot rename a directory it does not own there.
func TestDirReplayRefusesAnOpenParent(t *testing.T) {
	base := t.TempDir()
	for _, mode := range []os.FileMode{0o777, 0o777 | os.ModeSticky, 0o770, 0o730 | os.ModeSticky, 0o702} {
		open := filepath.Join(base, fmt.Sprintf("open%o", mode))
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, mode); err != nil {
			t.Fatal(err)
		}
		err := (&DirReplay{Dir: filepath.Join(open, "replay")}).Check()
		if err == nil || !strings.Contains(err.Error(), open) || strings.Contains(err.Error(), "\n") {
			t.Errorf("replay_dir directly in a parent of mode %v: %v", mode, err)
		}
		if _, err := os.Lstat(filepath.Join(open, "replay")); err == nil {
			t.Errorf("the refused check made replay_dir in a parent of mode %v", mode)
		}
		// One level down, in a directory of this user's own, the sticky
		// parent is a grandparent, and fine.
		own := filepath.Join(open, "own")
		if err := os.Mkdir(own, 0o700); err != nil {
			t.Fatal(err)
		}
		err = (&DirReplay{Dir: filepath.Join(own, "replay")}).Check()
		if sticky := mode&os.ModeSticky != 0; sticky != (err == nil) {
			t.Errorf("replay_dir under a grandparent of mode %v: %v", mode, err)
		}
	}
}

// Hole 4: a directory holding anything the exchange did not make is
// refused at start, naming it; the sweep removes only its own records.
func TestDirReplayOnlyItsOwnFiles(t *testing.T) {
	for _, name := range []string{"local.token", "config.toml", "devpi-credd.pid"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("12345\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := (&DirReplay{Dir: dir}).Check(); err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("a replay_dir holding %s: %v", name, err)
		}
	}
	// A file of a record's name whose content is not a record is not one.
	dir := t.TempDir()
	imposter := filepath.Join(dir, strings.Repeat("ab", 32))
	if err := os.WriteFile(imposter, []byte("devpi-credd root token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&DirReplay{Dir: dir}).Check(); err == nil || !strings.Contains(err.Error(), filepath.Base(imposter)) {
		t.Errorf("a file of a record's name, not a record: %v", err)
	}

	dir = t.TempDir()
	r := &DirReplay{Dir: dir}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if fresh, err := r.Use("iss jti-1", now.Add(time.Minute), now); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	// Foreign files added later, some with a record's name or an old
	// mtime: the sweep leaves them all.
	foreign := map[string]string{"local.token": "devpi-AAAA\n", "config.toml": "x = 1\n", "devpi-credd.pid": "4242\n",
		strings.Repeat("cd", 32): "not a record\n", strings.Repeat("ef", 32) + ".bak": "devpi-credd replay v1\n1\n"}
	old := now.Add(-48 * time.Hour)
	for name, text := range foreign {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	// An hour later: the record expired, the sweep runs.
	later := now.Add(time.Hour)
	if fresh, err := r.Use("iss jti-2", later.Add(time.Minute), later); !fresh || err != nil {
		t.Fatalf("a use an hour later: %v %v", fresh, err)
	}
	for name, text := range foreign {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != text {
			t.Errorf("the sweep touched %s: %q %v", name, b, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(foreign)+1 {
		t.Errorf("%d files, want the foreign ones and one record", len(entries))
	}
}

// Hole 6: an issuer (or a proxy in front of it) that redirects the key
// set to plain http: the redirect is not followed, so keys served there
// verify nothing. Discovery likewise.
func TestKeysNeverOverPlainHTTP(t *testing.T) {
	forged, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &forged.PublicKey, KeyID: "forged", Algorithm: "RS256", Use: "sig"}}})
	}))
	defer plain.Close()
	f := newFixture(t, nil)
	f.issuer.Redirect("/jwks", plain.URL+"/jwks")
	claims := map[string]any{}
	for k, v := range f.issuer.Claims {
		claims[k] = v
	}
	now := time.Now()
	claims["iss"], claims["aud"], claims["iat"], claims["exp"], claims["jti"] = f.issuer.URL, "devpi", now.Unix(), now.Add(5*time.Minute).Unix(), "forged-1"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: forged}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "forged"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if status, m, codes := f.post(t, tokenBody(tok)); status == 200 || m != nil {
		t.Errorf("a token signed by a key served over http after a redirect: %d %v", status, codes)
	}
	// The same client, not wrapped: the Verifier did not change the
	// caller's client.
	resp, err := f.issuer.Client().Get(f.issuer.URL + "/jwks")
	if err != nil {
		t.Fatalf("the caller's own client no longer follows redirects: %v", err)
	}
	resp.Body.Close()

	g := newFixture(t, nil)
	g.issuer.Redirect("/.well-known/openid-configuration", plain.URL+"/.well-known/openid-configuration")
	if status, _, codes := g.post(t, tokenBody(g.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 503 || codes[0] != CodeUnavailable {
		t.Errorf("discovery redirected to http: %d %v", status, codes)
	}
}

// PyPI's strict_aud: aud must be the audience itself, a string; a list,
// even of the one audience, is refused.
func TestStrictAudience(t *testing.T) {
	f := newFixture(t, nil)
	for _, aud := range []any{[]string{"devpi"}, []string{"devpi", "other"}, []string{"other", "devpi"}} {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": aud}))); status != 422 || codes[0] != CodeInvalidAudience {
			t.Errorf("aud %v: %d %v", aud, status, codes)
		}
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Errorf("aud devpi: %d %v", status, codes)
	}
}

// A 429 records nothing: the token is good once the budget refills.
func TestBudgetRefusalDoesNotBurnTheToken(t *testing.T) {
	f := newFixture(t, nil)
	cfg := *f.cfg.Load()
	cfg.Publishers = append([]config.Publisher(nil), cfg.Publishers...)
	cfg.Publishers[0].Budget = 1
	f.cfg.Store(&cfg)
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
		t.Fatalf("the first: %d %v", status, codes)
	}
	second := f.issuer.Sign(map[string]any{"aud": "devpi"})
	if status, _, codes := f.post(t, tokenBody(second)); status != 429 {
		t.Fatalf("over budget: %d %v", status, codes)
	}
	f.advance(time.Minute)
	if status, _, codes := f.post(t, tokenBody(second)); status != 200 {
		t.Errorf("the token refused for the budget, once it refilled: %d %v", status, codes)
	}
}

// A replay never spends the publisher's budget.
func TestReplayDoesNotSpendTheBudget(t *testing.T) {
	f := newFixture(t, nil) // budget 3
	first := f.issuer.Sign(map[string]any{"aud": "devpi"})
	if status, _, _ := f.post(t, tokenBody(first)); status != 200 {
		t.Fatal("the first")
	}
	for range 5 {
		if status, _, codes := f.post(t, tokenBody(first)); status != 422 || codes[0] != "invalid-reuse-token" {
			t.Errorf("a replay: %d %v", status, codes)
		}
	}
	for i := range 2 {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 200 {
			t.Errorf("a new token %d after replays: %d %v", i, status, codes)
		}
	}
	if n := len(f.minter.calls); n != 3 {
		t.Errorf("%d mints, want 3", n)
	}
}

// A 503 (the mint failed) records nothing: the job's one identity token is
// good once the server can mint again.
func TestMintFailureDoesNotBurnTheToken(t *testing.T) {
	f := newFixture(t, nil)
	f.minter.setErr(errors.New("the daemon is locked"))
	tok := f.issuer.Sign(map[string]any{"aud": "devpi"})
	if status, _, codes := f.post(t, tokenBody(tok)); status != 503 {
		t.Fatalf("the mint failing: %d %v", status, codes)
	}
	f.minter.setErr(nil)
	if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
		t.Errorf("after the 503, the same token: %d %v", status, codes)
	}
}

// A 503 (the audit line cannot be written) records nothing either.
func TestAuditFailureDoesNotBurnTheToken(t *testing.T) {
	for _, replay := range []func(t *testing.T) Replay{
		func(*testing.T) Replay { return &MemoryReplay{} },
		func(t *testing.T) Replay { return &DirReplay{Dir: t.TempDir()} },
	} {
		f := newFixture(t, replay(t))
		f.mu.Lock()
		f.audit = errors.New("no space left on device")
		f.mu.Unlock()
		tok := f.issuer.Sign(map[string]any{"aud": "devpi"})
		if status, _, codes := f.post(t, tokenBody(tok)); status != 503 {
			t.Fatalf("the audit failing: %d %v", status, codes)
		}
		f.mu.Lock()
		f.audit = nil
		f.mu.Unlock()
		if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
			t.Errorf("after the 503, the same token: %d %v", status, codes)
		}
		if status, _, codes := f.post(t, tokenBody(tok)); status != 422 || codes[0] != "invalid-reuse-token" {
			t.Errorf("and then once more: %d %v", status, codes)
		}
	}
}

// N exchanges of one token at once: exactly one 200, in one process and
// across replicas sharing a directory.
func TestConcurrentUsesOneWins(t *testing.T) {
	dir := t.TempDir()
	for _, replays := range [][]Replay{
		{&MemoryReplay{}},
		{&DirReplay{Dir: dir}, &DirReplay{Dir: dir}, &DirReplay{Dir: dir}},
	} {
		var fs []*fixture
		f := newFixture(t, replays[0])
		fs = append(fs, f)
		for _, r := range replays[1:] {
			g := newFixtureFor(t, f, r)
			fs = append(fs, g)
		}
		for _, g := range fs {
			cfg := *g.cfg.Load()
			cfg.Publishers = append([]config.Publisher(nil), cfg.Publishers...)
			cfg.Publishers[0].Budget = 0
			g.cfg.Store(&cfg)
		}
		tok := tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))
		const n = 24
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Go(func() {
				resp, err := http.Post(fs[i%len(fs)].url+PathMintToken, "application/json", strings.NewReader(tok))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			switch s {
			case 200:
				ok++
			case 422:
			default:
				t.Errorf("a concurrent use answered %d", s)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d concurrent uses of one token minted (%d replicas), want 1", ok, n, len(fs))
		}
	}
}

// A token without jti (Google's, older Buildkite's) is remembered by a
// hash of what its signature covers, and good once.
func TestTokenWithoutJTI(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.issuer.Sign(map[string]any{"aud": "devpi", "jti": nil})
	if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
		t.Fatalf("a token without jti: %d %v", status, codes)
	}
	if status, _, codes := f.post(t, tokenBody(tok)); status != 422 || codes[0] != "invalid-reuse-token" {
		t.Errorf("its replay: %d %v", status, codes)
	}
	// Its signature's base64 has spare bits (and an ECDSA signature has
	// two forms): a changed encoding of the same signature is the same
	// token.
	parts := strings.Split(tok, ".")
	last := parts[2][len(parts[2])-1]
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		if byte(c) == last {
			continue
		}
		other := parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(c)
		if status, _, _ := f.post(t, tokenBody(other)); status == 200 {
			t.Errorf("the signature re-encoded (last character %q) was taken as another token", c)
		}
	}
}

// PyPI's paths: the legacy GitHub one, and 404 not-enabled everywhere
// while [exchange] is gone.
func TestPyPIPaths(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Post(f.url+"/_/oidc/github/mint-token", "application/json", strings.NewReader(tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the legacy path: %d", resp.StatusCode)
	}
	f.cfg.Store(nil)
	for _, r := range []struct{ method, path string }{
		{"GET", PathAudience}, {"POST", PathMintToken}, {"POST", "/_/oidc/github/mint-token"}, {"POST", "/_/oidc/burn-token"}, {"GET", "/"}, {"GET", "/anything"},
	} {
		req, _ := http.NewRequest(r.method, f.url+r.path, strings.NewReader(tokenBody("x")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rf Refusal
		err = json.NewDecoder(resp.Body).Decode(&rf)
		resp.Body.Close()
		if resp.StatusCode != 404 || err != nil || len(rf.Errors) != 1 || rf.Errors[0].Code != "not-enabled" || rf.Message == "" {
			t.Errorf("%s %s with [exchange] gone: %d %+v %v", r.method, r.path, resp.StatusCode, rf, err)
		}
	}
}

// uv's burn-token after publishing: 202, and an audit event with the
// user and id of the token the exchange minted (never the token); not a
// devpi token: 422 invalid-payload.
func TestBurnToken(t *testing.T) {
	f := newFixture(t, nil)
	status, m, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"})))
	if status != 200 || m == nil {
		t.Fatalf("mint: %d %v", status, codes)
	}
	status, answer := f.burn(t, tokenBody(m.Token))
	if status != 202 || strings.Contains(string(answer), "devpi-") || strings.Contains(strings.ToLower(string(answer)), "revoked") && !strings.Contains(string(answer), "not revoked") {
		t.Errorf("burn-token: %d %s", status, answer)
	}
	reported := f.reported()
	if len(reported) != 1 || reported[0].Reported.User != "alice" || reported[0].Reported.TokenID != "abcd2345" || reported[0].Refused != nil || reported[0].Minted != nil {
		t.Errorf("the audit events: %+v", reported)
	}
	all, _ := json.Marshal(reported)
	if strings.Contains(string(all), m.Token) {
		t.Error("the audit event holds the token")
	}
	for _, body := range []string{tokenBody("pypi-AgEIcHlwaS5vcmc"), tokenBody("not a token"), "garbage", `{"token": ""}`} {
		status, answer := f.burn(t, body)
		var rf Refusal
		_ = json.Unmarshal(answer, &rf)
		if status != 422 || len(rf.Errors) == 0 || rf.Errors[0].Code != CodeInvalidPayload {
			t.Errorf("burn-token of %s: %d %s", body, status, answer)
		}
	}
}

// Anyone can post any devpi-token-shaped value to burn-token. A token
// this exchange did not mint gets the same 202 (nothing is revealed, uv
// does not warn) but no reported_used event: it is audited as a refusal,
// within its address's budget of refusal lines, so that forged reports
// can neither name any user nor crowd out a real one; a token reported
// twice is reported once.
func TestBurnTokenOnlyForMintedTokens(t *testing.T) {
	f := newFixture(t, nil)
	key := []byte("0123456789abcdef0123456789abcdef")
	forged, err := token.New(key, "root", "abcd2345")
	if err != nil {
		t.Fatal(err)
	}
	forged, err = forged.Derive(token.Expires(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if status, answer := f.burn(t, tokenBody(forged.Reveal())); status != 202 {
			t.Fatalf("burn-token of a forged token: %d %s", status, answer)
		}
	}
	if r := f.reported(); len(r) != 0 {
		t.Fatalf("a forged token was reported used: %+v", r[0].Reported)
	}
	f.mu.Lock()
	last := f.events[len(f.events)-1]
	f.mu.Unlock()
	if last.Refused == nil || !slices.Contains(last.Refused.Codes(), CodeUnknownToken) || !strings.Contains(last.Refused.Message, "did not mint") {
		t.Errorf("a forged report's audit event: %+v", last)
	}

	status, m, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"})))
	if status != 200 || m == nil {
		t.Fatalf("mint: %d %v", status, codes)
	}
	for range 2 {
		if status, answer := f.burn(t, tokenBody(m.Token)); status != 202 {
			t.Fatalf("burn-token of a minted token: %d %s", status, answer)
		}
	}
	if r := f.reported(); len(r) != 1 || r[0].Reported.TokenID != "abcd2345" {
		t.Errorf("a minted token burnt twice after 100 forged reports: %d reported_used events, want 1", len(r))
	}
}

// A replica's minted token is not this exchange's: reported as a refusal
// only, as any other it did not mint.
func TestBurnTokenOfAnotherReplica(t *testing.T) {
	f := newFixture(t, nil)
	g := newFixtureFor(t, f, nil)
	_, m, _ := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"})))
	if m == nil {
		t.Fatal("no token minted")
	}
	if status, _ := g.burn(t, tokenBody(m.Token)); status != 202 {
		t.Errorf("burn-token at another replica: %d", status)
	}
	if r := g.reported(); len(r) != 0 {
		t.Errorf("another replica's token was reported used: %+v", r[0].Reported)
	}
}

func exchangeNamesRename(t *testing.T, a, b string) {
	t.Helper()
	tmp := a + ".swap"
	for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(fmt.Errorf("swapping: %w", err))
		}
	}
}

// blindReplay is a Replay whose Seen never sees: two uses that both
// passed Seen before either recorded, as concurrent ones do.
type blindReplay struct{ Replay }

func (blindReplay) Seen(string, time.Time) (bool, error) { return false, nil }

// The second of two uses that raced past Seen loses at Use: the token it
// minted is dropped, and the audit event says so.
func TestLostRaceGetsNothing(t *testing.T) {
	f := newFixture(t, blindReplay{&MemoryReplay{}})
	tok := tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))
	if status, _, codes := f.post(t, tok); status != 200 {
		t.Fatalf("the winner: %d %v", status, codes)
	}
	status, m, codes := f.post(t, tok)
	if status != 422 || m != nil || codes[0] != CodeReused {
		t.Errorf("the loser: %d %+v %v", status, m, codes)
	}
	f.mu.Lock()
	last := f.events[len(f.events)-1]
	f.mu.Unlock()
	if len(f.minter.calls) != 2 || last.Minted != nil || last.Refused == nil || !strings.Contains(last.Reason, "minted and dropped") || !strings.Contains(last.Reason, "abcd2345") {
		t.Errorf("%d mints; the loser's audit event: %+v", len(f.minter.calls), last)
	}
}

// Both stores: Seen records nothing, Use records once, Forget undoes it,
// records expire, on an injected clock.
func TestReplayStores(t *testing.T) {
	for name, r := range map[string]Replay{"memory": &MemoryReplay{}, "dir": &DirReplay{Dir: t.TempDir()}} {
		t.Run(name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			until := now.Add(5 * time.Minute)
			step := func(what string, got bool, err error, want bool) {
				t.Helper()
				if got != want || err != nil {
					t.Errorf("%s: %v %v, want %v", what, got, err, want)
				}
			}
			seen, err := r.Seen("k", now)
			step("seen before any use", seen, err, false)
			seen, err = r.Seen("k", now)
			step("seen again: Seen recorded nothing", seen, err, false)
			fresh, err := r.Use("k", until, now)
			step("the first use", fresh, err, true)
			seen, err = r.Seen("k", now)
			step("seen after the use", seen, err, true)
			fresh, err = r.Use("k", until, now)
			step("the second use", fresh, err, false)
			if err := r.Forget("k"); err != nil {
				t.Fatal(err)
			}
			seen, err = r.Seen("k", now)
			step("seen after Forget", seen, err, false)
			fresh, err = r.Use("k", until, now)
			step("a use after Forget", fresh, err, true)
			seen, err = r.Seen("k", until.Add(time.Second))
			step("seen once expired", seen, err, false)
		})
	}
}

// A record a crash cut short refuses its token (fails closed), and is
// the exchange's own: the start check takes it, the sweep removes it
// after a day. Records of the format before the header are taken too.
func TestDirReplayLeftovers(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	short := filepath.Join(dir, recordName("iss jti short"))
	legacy := filepath.Join(dir, recordName("iss jti legacy"))
	if err := os.WriteFile(short, []byte("devpi-credd rep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacy, []byte(fmt.Sprintf("%d\n", now.Add(time.Minute).Unix())), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &DirReplay{Dir: dir}
	if err := r.Check(); err != nil {
		t.Fatalf("a cut-short record and an old-format one: %v", err)
	}
	for _, key := range []string{"iss jti short", "iss jti legacy"} {
		if seen, err := r.Seen(key, now); !seen || err != nil {
			t.Errorf("%s: seen %v %v", key, seen, err)
		}
	}
	later := now.Add(25 * time.Hour)
	if err := os.Chtimes(short, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Use("iss jti new", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{short, legacy} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s not swept", filepath.Base(p))
		}
	}
}

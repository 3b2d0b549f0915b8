package daemon

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

func exchangeConfig(issuer string) string {
	return fmt.Sprintf(`indexes = ["team/release", "team/dev"]

[exchange]
listen = "127.0.0.1:0"
audience = "devpi"
max_ttl = "5m"

[[exchange.publishers]]
name = "release"
server = "local"
issuer = %q
indexes = ["team/release"]
any_project = true
claims = { repository = "org/repo", ref = "refs/tags/v*" }
`, issuer)
}

// exchangeFixture is a daemon with an exchange that trusts a test issuer.
func exchangeFixture(t *testing.T, root *token.Token) (*fixture, *testissuer.Issuer, *exchange.Client) {
	t.Helper()
	is, err := testissuer.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Stop)
	f := newFixtureWith(t, "http://127.0.0.1:3141/", root, exchangeConfig(is.URL), func(d *Daemon) { d.opts.IssuerHTTP = is.Client() })
	base, err := url.Parse("http://" + f.d.ExchangeAddr())
	if err != nil {
		t.Fatal(err)
	}
	return f, is, &exchange.Client{Base: base, HTTP: http.DefaultClient}
}

// The daemon's exchange: a matching identity token gets a token derived
// from the server's, for the publisher's index and upload only, expiring
// within max_ttl; refusals are audited with their codes; no secret in the
// audit log or the logs.
func TestExchangeMints(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	f, is, c := exchangeFixture(t, root)
	jwt := is.Sign(map[string]any{"aud": "devpi"})
	m, err := c.Exchange(t.Context(), jwt)
	if err != nil {
		t.Fatal(err)
	}
	if m.Username != "alice" || !strings.HasPrefix(m.Token, token.Prefix) {
		t.Errorf("minted: user %q", m.Username)
	}
	if d := time.Until(time.Unix(m.Expires, 0)); d > 5*time.Minute || d < 4*time.Minute {
		t.Errorf("expires in %s, want max_ttl 5m", d)
	}
	tok, err := token.Parse(m.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify(testKey, token.Request{Index: "team/release", Permission: "upload", User: "alice"}); err != nil {
		t.Errorf("the minted token is refused for its publisher's upload: %v", err)
	}
	for _, r := range []token.Request{{Index: "team/dev", Permission: "upload"}, {Index: "team/release", Permission: "del_project"}} {
		if err := tok.Verify(testKey, r); err == nil {
			t.Errorf("the minted token is good for %+v", r)
		}
	}
	if _, err := c.Exchange(t.Context(), jwt); err == nil || !strings.Contains(err.Error(), "invalid-reuse-token") {
		t.Errorf("a replay: %v", err)
	}
	if _, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi", "repository": "org/evil"})); err == nil || !strings.Contains(err.Error(), "invalid-publisher") {
		t.Errorf("another repository: %v", err)
	}
	st, err := f.client.Status(t.Context())
	if err != nil || st.Exchange != f.d.ExchangeAddr() || st.Exchanged != 1 || st.Refused != 2 {
		t.Errorf("status: %+v %v", st, err)
	}
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) != 3 {
		t.Fatalf("%d audit lines, want 3:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var minted, replay auditEntry
	_ = json.Unmarshal([]byte(lines[0]), &minted)
	_ = json.Unmarshal([]byte(lines[1]), &replay)
	if minted.Event != "exchange" || minted.Publisher != "release" || minted.Issuer != is.URL || minted.TokenID != "abcd2345" ||
		minted.Claims["repository"] != "org/repo" || minted.Claims["run_id"] == "" || minted.Expires != m.Expires || len(minted.Caveats) != 3 || minted.Remote != "127.0.0.1" {
		t.Errorf("the exchange's line: %s", lines[0])
	}
	if replay.Event != "refuse" || strings.Join(replay.Codes, ",") != "invalid-reuse-token" || replay.Publisher != "release" {
		t.Errorf("the replay's line: %s", lines[1])
	}
	// A remote caller has no local uid: no "peer" that reads as root's.
	for _, l := range lines {
		if strings.Contains(l, `"peer"`) {
			t.Errorf("an exchange's line names a local peer: %s", l)
		}
	}
	all := strings.Join(lines, "\n") + f.logs.String()
	noSecrets(t, all, root, tok)
	if strings.Contains(all, strings.Split(jwt, ".")[2][:20]) {
		t.Error("the identity token's signature is in the audit log or the logs")
	}
}

// The exchange never mints more than the server's token can do, nor past
// its expiry.
func TestExchangeBoundedByRoot(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(2*time.Minute)))
	_, is, c := exchangeFixture(t, root)
	m, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(m.Expires, 0)); d > 2*time.Minute {
		t.Errorf("expires in %s, past the root's 2m", d)
	}
	only, err := token.Indexes("team/dev")
	if err != nil {
		t.Fatal(err)
	}
	narrow := mintRoot(t, "efgh2345", only)
	g, is2, c2 := exchangeFixture(t, narrow)
	_, err = c2.Exchange(t.Context(), is2.Sign(map[string]any{"aud": "devpi"}))
	if err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("a publisher asking for more than the root can do: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "team/dev") {
		t.Errorf("the caller is told what the server's token can do: %v", err)
	}
	if st, _ := g.client.Status(t.Context()); st.Exchanged != 0 {
		t.Errorf("exchanged %d", st.Exchanged)
	}
	g.stop()
	if lines := readLines(t, g.audit); len(lines) != 1 || !strings.Contains(lines[0], "team/dev") {
		t.Errorf("the audit line does not say why: %v", lines)
	}
}

// Locked, the exchange mints nothing either.
func TestExchangeLocked(t *testing.T) {
	f, is, c := exchangeFixture(t, mintRoot(t, "abcd2345"))
	if _, err := f.client.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"})); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("locked: %v", err)
	}
	f.stop()
	if lines := readLines(t, f.audit); len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "the daemon is locked") {
		t.Errorf("the audit log does not say it was locked: %v", lines)
	}
}

// Publishers follow reloads; without [exchange] the listener refuses all
// until restart; a bad edit leaves the old publishers serving.
func TestExchangeReload(t *testing.T) {
	f, is, c := exchangeFixture(t, mintRoot(t, "abcd2345"))
	good, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(f.config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exchangeErr := func() error {
		_, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
		return err
	}
	// Another repository: the running exchange refuses org/repo.
	write(strings.Replace(string(good), `repository = "org/repo"`, `repository = "org/other"`, 1))
	waitFor(t, reloadWithin, "the publisher's new claims", func() bool {
		err := exchangeErr()
		return err != nil && strings.Contains(err.Error(), "invalid-publisher")
	})
	// A bad edit: the last good publishers stand.
	write(strings.Replace(string(good), `server = "local"`, `server = "nowhere"`, 1))
	waitFor(t, reloadWithin, "the bad edit reported", func() bool { st, _ := f.client.Status(t.Context()); return st.ConfigError != "" })
	if err := exchangeErr(); err == nil || !strings.Contains(err.Error(), "invalid-publisher") {
		t.Errorf("after a bad edit: %v", err)
	}
	write(string(good))
	waitFor(t, reloadWithin, "the publisher back", func() bool { return exchangeErr() == nil })
	// [exchange] removed: refuse everything.
	cut := strings.Index(string(good), "[exchange]")
	write(string(good[:cut]))
	waitFor(t, reloadWithin, "the exchange off", func() bool {
		err := exchangeErr()
		return err != nil && strings.Contains(err.Error(), "turned off")
	})
	if _, err := c.Audience(t.Context()); err == nil {
		t.Error("the audience is answered with the exchange off")
	}
	if !strings.Contains(f.logs.String(), "refuses every request until a restart") {
		t.Error("no warning that the exchange is off until restart")
	}
}

// A flood of bad exchanges from one address: lines up to the burst, the
// rest summed up in a refuse_summary line for that address (no local
// peer). The clock stands still, so the budget does not refill however
// slow the machine.
func TestExchangeRefusalFlood(t *testing.T) {
	stopped := time.Now()
	root := mintRoot(t, "abcd2345", token.Expires(stopped.Add(time.Hour)))
	f := newFixtureWith(t, "http://127.0.0.1:3141/", root, exchangeConfig("https://issuer.example"), func(d *Daemon) {
		d.opts.Now = func() time.Time { return stopped }
	})
	const n = 3 * refusalBurst
	for range n {
		resp, err := http.Post("http://"+f.d.ExchangeAddr()+exchange.PathMintToken, "application/json", strings.NewReader("garbage"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	f.d.flushRefusals()
	f.stop()
	lines, counted := readLines(t, f.audit), 0
	var summary auditEntry
	for _, l := range lines {
		var e auditEntry
		_ = json.Unmarshal([]byte(l), &e)
		switch e.Event {
		case "refuse":
			counted++
		case "refuse_summary":
			summary = e
			counted += e.Count
			if strings.Contains(l, `"peer"`) || e.Remote != "127.0.0.1" {
				t.Errorf("the summary line: %s", l)
			}
		}
	}
	if counted != n || summary.Count == 0 || len(lines) != refusalBurst+1 {
		t.Errorf("%d refusals counted in %d lines (summary %+v), want %d in %d", counted, len(lines), summary, n, refusalBurst+1)
	}
}

// Behind a trusted proxy a caller can name a new address per request
// (X-Forwarded-For): the lines of all remote callers share one budget, and
// what it holds back is summed up under "*". Nothing is lost.
func TestExchangeRefusalRotatingAddresses(t *testing.T) {
	stopped := time.Now()
	root := mintRoot(t, "abcd2345", token.Expires(stopped.Add(time.Hour)))
	cfg := strings.Replace(exchangeConfig("https://issuer.example"), "max_ttl", "trusted_proxies = [\"127.0.0.1\"]\nmax_ttl", 1)
	f := newFixtureWith(t, "http://127.0.0.1:3141/", root, cfg, func(d *Daemon) {
		d.opts.Now = func() time.Time { return stopped }
	})
	const n = 10 * refusalRemoteBurst
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, "http://"+f.d.ExchangeAddr()+exchange.PathMintToken, strings.NewReader("garbage"))
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.%d.%d", i/250, i%250))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	f.d.flushRefusals()
	f.stop()
	lines, counted, star := readLines(t, f.audit), 0, 0
	for _, l := range lines {
		var e auditEntry
		_ = json.Unmarshal([]byte(l), &e)
		switch {
		case e.Event == "refuse" && e.Via == "127.0.0.1" && strings.HasPrefix(e.Remote, "198.51."):
			counted++
		case e.Event == "refuse_summary" && e.Remote == "*":
			star++
			counted += e.Count
		default:
			t.Errorf("unexpected line: %s", l)
		}
	}
	if counted != n || star != 1 || len(lines) != refusalRemoteBurst+1 {
		t.Errorf("%d refusals counted in %d lines (%d summaries under *), want %d in %d", counted, len(lines), star, n, refusalRemoteBurst+1)
	}
}

// A refusal's reason quotes the caller (here a 40 KB "alg"): capped in
// the refusal line, its summary and the daemon's log.
func TestExchangeLongReasonIsCapped(t *testing.T) {
	stopped := time.Now()
	root := mintRoot(t, "abcd2345", token.Expires(stopped.Add(time.Hour)))
	f := newFixtureWith(t, "http://127.0.0.1:3141/", root, exchangeConfig("https://issuer.example"), func(d *Daemon) {
		d.opts.Now = func() time.Time { return stopped }
	})
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + strings.Repeat("A", 40000) + `"}`))
	body := `{"token":"` + header + `.e30.c2ln"}`
	for range refusalBurst + 5 {
		resp, err := http.Post("http://"+f.d.ExchangeAddr()+exchange.PathMintToken, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	f.d.flushRefusals()
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) != refusalBurst+1 {
		t.Errorf("%d audit lines, want %d", len(lines), refusalBurst+1)
	}
	for _, l := range append(lines, strings.Split(f.logs.String(), "\n")...) {
		if len(l) > 2*maxReason {
			t.Errorf("a line of %d bytes: %.200s...", len(l), l)
		}
	}
}

// A publisher asking for more than the server's token allows is refused
// whenever what is left is less than it asked for, not only when nothing
// is left: a token of index team/release asked for team/release and
// team/dev would otherwise be minted for team/release alone, silently.
func TestExchangeAskingForMoreIsRefused(t *testing.T) {
	both := strings.Replace(exchangeConfig("ISSUER"), `indexes = ["team/release"]`, `indexes = ["team/release", "team/dev"]`, 1)
	must := func(r token.Restriction, err error) []token.Restriction {
		if err != nil {
			t.Fatal(err)
		}
		return []token.Restriction{r}
	}
	for _, tt := range []struct {
		name   string
		root   []token.Restriction
		config string
		ok     bool
	}{
		{"the root allows all it asks", nil, both, true},
		{"the root has one of its two indexes", must(token.Indexes("team/release")), both, false},
		{"the root allows one of its permissions", must(token.Allowed("pkg_read")),
			strings.Replace(both, "claims =", "allowed = [\"upload\", \"pkg_read\"]\nclaims =", 1), false},
		{"the root allows more than it asks", must(token.Indexes("team/release", "team/dev", "team/other")), both, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is, err := testissuer.Start("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(is.Stop)
			root := mintRoot(t, "abcd2345", tt.root...)
			f := newFixtureWith(t, "http://127.0.0.1:3141/", root, strings.Replace(tt.config, "ISSUER", is.URL, 1), func(d *Daemon) { d.opts.IssuerHTTP = is.Client() })
			base, _ := url.Parse("http://" + f.d.ExchangeAddr())
			c := &exchange.Client{Base: base, HTTP: http.DefaultClient}
			_, err = c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
			if tt.ok != (err == nil) {
				t.Fatalf("minted: %v, want %v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "unavailable") {
				t.Errorf("refused with %v", err)
			}
			f.stop()
			if lines := readLines(t, f.audit); !tt.ok && (len(lines) != 1 || !strings.Contains(lines[0], "asks for more")) {
				t.Errorf("the audit line does not say why: %v", lines)
			}
		})
	}
}

// uv's burn-token after an upload: 202, and a reported_used line with
// the token's user and id, never the token.
func TestExchangeBurnToken(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	f, is, c := exchangeFixture(t, root)
	m, err := c.Exchange(t.Context(), is.Sign(map[string]any{"aud": "devpi"}))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": m.Token})
	resp, err := http.Post("http://"+f.d.ExchangeAddr()+exchange.PathBurnToken, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("burn-token: %d", resp.StatusCode)
	}
	f.stop()
	lines := readLines(t, f.audit)
	var e auditEntry
	if len(lines) == 2 {
		_ = json.Unmarshal([]byte(lines[1]), &e)
	}
	if e.Event != "reported_used" || e.User != "alice" || e.TokenID != "abcd2345" || e.Remote != "127.0.0.1" {
		t.Errorf("the audit lines: %v", lines)
	}
	if strings.Contains(strings.Join(lines, "\n"), strings.TrimPrefix(m.Token, token.Prefix)) {
		t.Error("the audit log holds the token")
	}
}

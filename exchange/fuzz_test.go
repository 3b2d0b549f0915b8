package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/testissuer"
	"github.com/devpi-credd/devpi-credd/token"
)

// Fuzz targets for what the internet hands the exchange: the identity
// token before its signature is checked, the claims a publisher matches
// on, X-Forwarded-For, and the mint-token body. Each checks what must hold
// of the answer, not only that nothing panics.

// fzB64 is a JWT part.
func fzB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// fzJWT is a JWT-shaped token of a header and a payload (no valid
// signature).
func fzJWT(header, payload string) string {
	return fzB64(header) + "." + fzB64(payload) + "." + fzB64("signature")
}

// Real-shaped claims of GitHub Actions' and GitLab CI's identity tokens.
const (
	fzGitHubClaims = `{"jti":"0d2b5b1e-51a7-4b2a-8b8f-3c2e5e8f2a11","sub":"repo:octo-org/octo-repo:environment:release",` +
		`"aud":"devpi.example.com","ref":"refs/tags/v1.2.0","sha":"d6cd1e2bd19e03a81132a23b2025920577f84e37",` +
		`"repository":"octo-org/octo-repo","repository_owner":"octo-org","repository_owner_id":"65","repository_id":"74",` +
		`"run_id":"5442312","run_number":"12","run_attempt":"1","actor":"octocat","event_name":"push","ref_type":"tag",` +
		`"workflow":"Release","workflow_ref":"octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.2.0",` +
		`"job_workflow_ref":"octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.2.0","environment":"release",` +
		`"iss":"https://token.actions.githubusercontent.com","nbf":1700000000,"exp":1700000900,"iat":1700000300}`
	fzGitLabClaims = `{"namespace_id":"72","namespace_path":"group","project_id":"20","project_path":"group/project",` +
		`"user_id":"1","user_login":"sample-user","pipeline_id":"574","pipeline_source":"push","job_id":"302",` +
		`"ref":"v1.2.0","ref_type":"tag","ref_path":"refs/tags/v1.2.0","ref_protected":"true",` +
		`"ci_config_ref_uri":"gitlab.example.com/group/project//.gitlab-ci.yml@refs/tags/v1.2.0",` +
		`"ci_config_sha":"d6cd1e2bd19e03a81132a23b2025920577f84e37","sha":"d6cd1e2bd19e03a81132a23b2025920577f84e37",` +
		`"jti":"235b3a54-b797-45c7-ae9a-f72d7bc6ef5b","iss":"https://gitlab.example.com","iat":1700000300,"nbf":1700000295,` +
		`"exp":1700003900,"sub":"project_path:group/project:ref_type:tag:ref:v1.2.0","aud":"devpi.example.com"}`
)

// parseRaw's refusals are fixed texts: nothing of what the caller sent is
// echoed through them.
var fzRawErrors = []string{
	"not a JWT (three base64url parts)",
	"not a JWT (a part is not base64url)",
	"not a JWT (a part is not JSON)",
}

// FuzzParseRaw: the split of an identity token before its signature is
// checked. What it returns is what the token's two first parts say; what
// it refuses, it refuses with a fixed text; and Verify's refusal of it
// (no issuer trusted, nothing fetched) is one bounded line.
func FuzzParseRaw(f *testing.F) {
	f.Add(fzJWT(`{"alg":"RS256","kid":"1F2AB83404C08EC9EA0BB99DAED02186B091DBF4","typ":"JWT"}`, fzGitHubClaims))
	f.Add(fzJWT(`{"alg":"RS256","kid":"4i3sFE7sxqNPOT7FdvcGA1ZVGGI_r-tsDXnEuYT4ZqE","typ":"JWT"}`, fzGitLabClaims))
	f.Add(fzJWT(`{"alg":"none"}`, `{"iss":"https://token.actions.githubusercontent.com"}`))
	f.Add(fzJWT(`{"alg":"HS256","kid":"x"}`, `{"iss":42}`))
	f.Add(fzJWT(`{"ALG":"RS256","alg":"none"}`, `{"iss":"a","ISS":"b"}`))
	f.Add(fzJWT(`null`, `null`))
	f.Add(fzJWT(`[]`, `"iss"`))
	f.Add(" \n" + fzJWT(`{"alg":"ES256"}`, `{}`) + "\t")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0")
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln.extra")
	f.Add("eyJhbGciOiJSUzI1NiJ9=.eyJpc3MiOiJ4In0.")
	f.Add(fzJWT(`{"alg":"`+strings.Repeat("\u2028x\n", 200)+`"}`, `{}`))
	v := &Verifier{Now: func() time.Time { return time.Unix(1700000400, 0) }}
	f.Fuzz(func(t *testing.T, s string) {
		rt, err := parseRaw(s)
		if err != nil {
			if !fzOneOf(err.Error(), fzRawErrors) {
				t.Fatalf("refused with %q: not one of the fixed texts", err)
			}
		} else {
			parts := strings.Split(strings.TrimSpace(s), ".")
			if len(parts) != 3 {
				t.Fatalf("taken with %d parts", len(parts))
			}
			var header, payload map[string]any
			for i, into := range []*map[string]any{&header, &payload} {
				b, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil || !json.Valid(b) {
					t.Fatalf("part %d taken but not base64url JSON: %q", i, parts[i])
				}
				_ = json.Unmarshal(b, into)
			}
			// Only what the part says (when it says it once, in this
			// case: encoding/json also takes "ALG", the last one given).
			for _, c := range []struct {
				m        map[string]any
				key, got string
			}{{header, "alg", rt.Alg}, {header, "kid", rt.Kid}, {payload, "iss", rt.Iss}} {
				if want, ok := fzOnly(c.m, c.key); ok && c.got != want {
					t.Fatalf("%s %q, but the token says %q", c.key, c.got, want)
				}
				if _, said := fzAnyCase(c.m, c.key); !said && c.got != "" {
					t.Fatalf("%s %q, but the token has none", c.key, c.got)
				}
			}
		}
		_, rf := v.Verify(context.Background(), s, "devpi.example.com", map[string]bool{})
		if rf == nil {
			t.Fatal("verified with no issuer trusted")
		}
		if rf.Status != 422 || len(rf.Errors) != 1 || (rf.Errors[0].Code != CodeInvalidToken && rf.Errors[0].Code != CodeUnknownIssuer) {
			t.Fatalf("refusal %d %v", rf.Status, rf.Codes())
		}
		if line := rf.Error(); strings.ContainsAny(line, "\r\n") || len(line) > 2048 {
			t.Fatalf("refusal not one bounded line (%d bytes): %q", len(line), line)
		}
	})
}

func fzOneOf(s string, list []string) bool {
	for _, l := range list {
		if s == l {
			return true
		}
	}
	return false
}

// fzOnly is m[key] when it is a string and no other spelling of key (in
// another case) is in m.
func fzOnly(m map[string]any, key string) (string, bool) {
	n, _ := fzAnyCase(m, key)
	v, ok := m[key].(string)
	return v, ok && n == 1
}

// fzAnyCase counts m's keys equal to key under Unicode case folding (as
// encoding/json matches them to a field).
func fzAnyCase(m map[string]any, key string) (int, bool) {
	n := 0
	for k := range m {
		if strings.EqualFold(k, key) {
			n++
		}
	}
	return n, n > 0
}

// FuzzWorkflowFile: workflow_file is derived from GitHub's
// job_workflow_ref only, in the token's own repository: it never holds
// '/' or '@', and REPOSITORY/.github/workflows/FILE@REF (REF the token's
// ref or sha) gives back job_workflow_ref exactly. A workflow_file of the
// token's own never survives; and a job_workflow_ref of that shape always
// yields its FILE.
func FuzzWorkflowFile(f *testing.F) {
	f.Add("octo-org/octo-repo", "octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.2.0", "refs/tags/v1.2.0", "d6cd1e2bd19e03a81132a23b2025920577f84e37", "", "release.yml")
	f.Add("octo-org/octo-repo", "octo-org/octo-repo/.github/workflows/release.yml@d6cd1e2bd19e03a81132a23b2025920577f84e37", "refs/heads/main", "d6cd1e2bd19e03a81132a23b2025920577f84e37", "forged.yml", "release.yml")
	f.Add("octo-org/octo-repo", "octo-org/shared/.github/workflows/publish.yml@refs/heads/main", "refs/tags/v1", "abc", "publish.yml", "x.yml")
	f.Add("org/repo", "org/repo/.github/workflows/release.yml@evil.yml@refs/tags/v1.0", "refs/tags/v1.0", "", "", "a@b.yml")
	f.Add("org/repo", "org/repo/.github/workflows/sub/release.yml@refs/tags/v1.0", "refs/tags/v1.0", "", "", "sub/release.yml")
	f.Add("", "/.github/workflows/release.yml@refs/tags/v1", "refs/tags/v1", "", "release.yml", "release.yml")
	f.Add("org/repo", "org/repo/.github/workflows/@refs/tags/v1", "refs/tags/v1", "", "", "")
	f.Add("org/repo", "org/repo/.github/workflows/release.yml@", "", "", "", "release.yml")
	f.Add("org/repo", "org/repo/.github/workflows/release.yml@refs/heads/a@b", "refs/heads/a@b", "b", "", "..")
	f.Fuzz(func(t *testing.T, repo, jwr, ref, sha, forged, file string) {
		claims := map[string]any{"repository": repo, "job_workflow_ref": jwr, "ref": ref, "sha": sha}
		if forged != "" {
			claims["workflow_file"] = forged
		}
		got, derived := stringClaims(claims)["workflow_file"]
		if derived {
			if repo == "" || got == "" || strings.ContainsAny(got, "/@") {
				t.Fatalf("workflow_file %q derived of repository %q, job_workflow_ref %q", got, repo, jwr)
			}
			prefix := repo + "/.github/workflows/" + got + "@"
			if (ref == "" || prefix+ref != jwr) && (sha == "" || prefix+sha != jwr) {
				t.Fatalf("workflow_file %q does not give back job_workflow_ref %q (ref %q, sha %q)", got, jwr, ref, sha)
			}
		}
		// A job_workflow_ref made of the parts always yields the file.
		if repo == "" || file == "" || strings.ContainsAny(file, "/@") {
			return
		}
		for _, r := range []string{ref, sha} {
			if r == "" {
				continue
			}
			made := repo + "/.github/workflows/" + file + "@" + r
			claims := map[string]any{"repository": repo, "job_workflow_ref": made, "ref": ref, "sha": sha, "workflow_file": forged}
			if got := stringClaims(claims)["workflow_file"]; got != file {
				t.Fatalf("job_workflow_ref %q (ref %q, sha %q) gave workflow_file %q, want %q", made, ref, sha, got, file)
			}
		}
	})
}

// FuzzCIConfigFile: ci_config_file is derived from GitLab's
// ci_config_ref_uri only, in the token's own project: HOST/PROJECT//FILE@REF
// with a HOST of no '/', FILE of no '@', REF the token's ref_path or sha,
// gives back ci_config_ref_uri exactly; a ci_config_file of the token's own
// never survives; and a ci_config_ref_uri of that shape always yields its
// FILE.
func FuzzCIConfigFile(f *testing.F) {
	f.Add("group/project", "gitlab.example.com/group/project//.gitlab-ci.yml@refs/tags/v1.2.0", "refs/tags/v1.2.0", "d6cd1e2bd19e03a81132a23b2025920577f84e37", "", "gitlab.com", ".gitlab-ci.yml")
	f.Add("group/proj", "gitlab.com/group/proj//ci/release.yml@refs/tags/v1", "refs/tags/v1", "0123abcd", "forged", "gitlab.com:8443", "ci/release.yml")
	f.Add("group/proj", "gitlab.com/x/group/proj//.gitlab-ci.yml@refs/tags/v1", "refs/tags/v1", "", "", "gitlab.com", ".gitlab-ci.yml")
	f.Add("group/proj", "gitlab.com/group/proj//a.yml@b.yml@refs/tags/v1", "refs/tags/v1", "", "", "h", "a@b.yml")
	f.Add("proj", "gitlab.com/group/proj//.gitlab-ci.yml@0123abcd", "", "0123abcd", "", "", ".gitlab-ci.yml")
	f.Add("", "gitlab.com///.gitlab-ci.yml@refs/tags/v1", "refs/tags/v1", "", ".gitlab-ci.yml", "gitlab.com", "f")
	f.Add("group/proj", "/group/proj//.gitlab-ci.yml@refs/tags/v1", "refs/tags/v1", "", "", "gitlab.com", "//")
	f.Add("group/proj", "gitlab.com/group/proj//.gitlab-ci.yml@refs/tags/v1extra", "refs/tags/v1", "", "", "gitlab.com", "x/group/proj//y")
	f.Fuzz(func(t *testing.T, project, uri, refPath, sha, forged, host, file string) {
		claims := map[string]any{"project_path": project, "ci_config_ref_uri": uri, "ref_path": refPath, "sha": sha}
		if forged != "" {
			claims["ci_config_file"] = forged
		}
		got, derived := stringClaims(claims)["ci_config_file"]
		if derived {
			if project == "" || got == "" || strings.Contains(got, "@") {
				t.Fatalf("ci_config_file %q derived of project_path %q, ci_config_ref_uri %q", got, project, uri)
			}
			gives := func(r string) bool {
				h, ok := strings.CutSuffix(uri, "/"+project+"//"+got+"@"+r)
				return r != "" && ok && h != "" && !strings.Contains(h, "/")
			}
			if !gives(refPath) && !gives(sha) {
				t.Fatalf("ci_config_file %q does not give back ci_config_ref_uri %q (project %q, ref_path %q, sha %q)", got, uri, project, refPath, sha)
			}
		}
		if project == "" || host == "" || strings.Contains(host, "/") || file == "" || strings.Contains(file, "@") {
			return
		}
		for _, r := range []string{refPath, sha} {
			if r == "" {
				continue
			}
			made := host + "/" + project + "//" + file + "@" + r
			claims := map[string]any{"project_path": project, "ci_config_ref_uri": made, "ref_path": refPath, "sha": sha, "ci_config_file": forged}
			if got := stringClaims(claims)["ci_config_file"]; got != file {
				t.Fatalf("ci_config_ref_uri %q (ref_path %q, sha %q) gave ci_config_file %q, want %q", made, refPath, sha, got, file)
			}
		}
	})
}

// fzProxies are the trusted proxies FuzzClientAddr's cases are read with:
// an nginx on loopback and a private range of a load balancer's.
var fzProxies = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48"),
}

// FuzzClientAddr: the caller's address for the audit line and the refusal
// budgets. It is the peer's host, or (only when the peer is a trusted
// proxy) an address of X-Forwarded-For, in canonical form, no longer than
// an address is, that the chain of trusted proxies to the right of it
// vouches for.
func FuzzClientAddr(f *testing.F) {
	f.Add("127.0.0.1:51234", "198.51.100.3", "")
	f.Add("127.0.0.1:51234", "203.0.113.9, 198.51.100.3\n10.1.2.3", "")
	f.Add("192.0.2.7:4000", "203.0.113.9", "")
	f.Add("[::1]:4000", "2001:db8::5, 2001:db8:1::9", "")
	f.Add("127.0.0.1:4000", "::ffff:198.51.100.3", "")
	f.Add("127.0.0.1:4000", "198.51.100.3, fe80::1%<script>, 10.1.2.3", "")
	f.Add("[::ffff:127.0.0.1]:4000", "::ffff:10.1.2.3,::ffff:10.9.9.9", "")
	f.Add("10.0.0.2:80", " 10.9.9.9 ,10.1.2.3 , ", "")
	f.Add("[fe80::1%eth0]:80", "198.51.100.3", "fe80::/10")
	f.Add("127.0.0.1", "unknown, 198.51.100.3", "198.51.100.0/24")
	f.Add("@", "", "")
	f.Add("127.0.0.1:1", strings.Repeat("10.1.1.1,", 500)+"01.2.3.4", "")
	f.Fuzz(func(t *testing.T, peer, xff, extra string) {
		trusted := fzProxies
		if p, err := netip.ParsePrefix(extra); err == nil {
			trusted = append(trusted[:len(trusted):len(trusted)], p)
		}
		forwarded := strings.Split(xff, "\n")
		client, via := ClientAddr(peer, forwarded, trusted)
		host, _, err := net.SplitHostPort(peer)
		if err != nil {
			host = peer
		}
		peerIP, perr := netip.ParseAddr(host)
		peerTrusted := perr == nil && trustedAddr(peerIP, trusted)
		if !peerTrusted {
			if client != host || via != "" {
				t.Fatalf("peer %q is no trusted proxy, yet the caller is %q via %q", peer, client, via)
			}
			return
		}
		if via == "" {
			if client != host {
				t.Fatalf("caller %q without the proxy %q it came through", client, host)
			}
			return
		}
		if via != host || client == host {
			t.Fatalf("caller %q via %q, peer %q", client, via, host)
		}
		a, err := netip.ParseAddr(client)
		if err != nil || a.Zone() != "" || a.Is4In6() || a.String() != client || len(client) > len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") {
			t.Fatalf("caller %q is not an address in canonical form", client)
		}
		// Some entry is the caller, and every entry right of it is a
		// trusted proxy's.
		var hops []string
		for _, v := range forwarded {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for j := len(hops) - 1; j >= 0; j-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil || h.Zone() != "" {
				t.Fatalf("caller %q is not vouched for: %q in the way", client, hops[j])
			}
			if h.Unmap().String() == client {
				return
			}
			if !trustedAddr(h, trusted) {
				t.Fatalf("caller %q is left of %q, no trusted proxy", client, hops[j])
			}
		}
		t.Fatalf("caller %q is no entry of %q", client, forwarded)
	})
}

// fzCap keeps a failure's message readable.
func fzCap(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// fzMinter counts what it mints.
type fzMinter struct {
	mu    sync.Mutex
	count int
}

func (m *fzMinter) MintExchange(_ context.Context, p config.Publisher, maxTTL time.Duration) (*Minted, *Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.count++
	return &Minted{Success: true, Token: "devpi-FUZZMINTED", Username: "alice", Expires: 1},
		&Record{Server: p.Server, User: "alice", TokenID: "fuzz", Expires: 1}, nil
}

// fzStrictToken is what a mint-token body must be to reach the verifier,
// read on its own: at most 64 KiB of one JSON object whose one key is
// "token", given once, a string that is not blank.
func fzStrictToken(body []byte) (string, bool) {
	if len(body) > 64<<10 || !json.Valid(body) {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, _ := dec.Token(); t != json.Delim('{') {
		return "", false
	}
	var tok string
	n := 0
	for dec.More() {
		k, _ := dec.Token()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil || k != "token" || n > 0 || json.Unmarshal(v, &tok) != nil {
			return "", false
		}
		n++
	}
	return tok, n == 1 && strings.TrimSpace(tok) != ""
}

// FuzzMintTokenBody: POST /_/oidc/mint-token through the exchange's own
// handler, with a real issuer's signed tokens among the seeds. A body that
// is not exactly {"token": "..."} (a key twice, another key, another case,
// not an object, trailing data, over 64 KiB) is refused 400 before anything
// is verified; one that is reaches the verifier. A token is minted only
// for a token the issuer signed, once whatever the body around it; every
// answer is PyPI's shape; every request is one audit event; and neither
// the answer nor the audit holds the identity token.
func FuzzMintTokenBody(f *testing.F) {
	is, err := testissuer.Start("")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(is.Stop)
	start := time.Now() // the verifier's clock stands still: the seeds never expire
	clock := func() time.Time { return start }
	limits, err := token.ParseLimits([]string{"upload"}, []string{"team/release"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	cfg := &config.Exchange{Audience: "devpi", MaxTTL: 15 * time.Minute, Publishers: []config.Publisher{{
		Name: "release", Server: "local", Issuer: is.URL, Provider: "github", Limits: limits,
		Claims: map[string]string{"repository": "org/repo", "repository_owner_id": "4242", "workflow_file": "release.yml"},
	}}}
	minter := &fzMinter{}
	var events []Event
	h := NewServer(Options{
		Verifier: &Verifier{HTTP: is.Client(), Now: clock},
		Replay:   &MemoryReplay{}, Minter: minter, Now: clock,
		Config: func() *config.Exchange { return cfg },
		Audit:  func(e Event) error { events = append(events, e); return nil },
	}).Handler()

	signed := map[string]bool{}
	sign := func(tok string) string { signed[tok] = true; return tok }
	body := func(tok string) []byte { b, _ := json.Marshal(map[string]string{"token": tok}); return b }
	good := []string{
		sign(is.Sign(map[string]any{"aud": "devpi"})),
		sign(is.SignES256(map[string]any{"aud": "devpi"})),
		sign(is.Sign(map[string]any{"aud": "devpi"})),
		sign(is.Sign(map[string]any{"aud": "devpi"})),
	}
	f.Add(body(good[0]))
	f.Add([]byte(`{"token":"` + good[1] + `"}` + "\n"))
	f.Add([]byte(` { "token" : "` + good[0] + `" } `)) // good[0] again: refused as used
	f.Add([]byte(`{"token": "` + good[2] + `", "token": "` + good[3] + `"}`))
	f.Add([]byte(`{"Token": "` + good[3] + `"}`))
	f.Add([]byte(`{"token": "` + good[3] + `", "audience": "devpi"}`))
	f.Add([]byte(`{"token": "` + good[3] + `"}{"token": "x"}`))
	f.Add([]byte(`[{"token": "` + good[3] + `"}]`))
	f.Add([]byte(`{"\u0074oken": " ` + good[3] + `\t"}`))
	f.Add(body(sign(is.Sign(map[string]any{"aud": "devpi", "repository": "org/evil"}))))
	f.Add(body(is.SignNone(map[string]any{"aud": "devpi"})))
	f.Add(body(is.SignHMACWithPublicKey(map[string]any{"aud": "devpi"})))
	f.Add(body(fzJWT(`{"alg":"RS256","kid":"test-key-1"}`, fzGitHubClaims)))
	f.Add([]byte(`{"token": null}`))
	f.Add([]byte(`{"token": 12}`))
	f.Add([]byte(`{"token": "   "}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`"token"`))
	f.Add([]byte(`null`))
	f.Add([]byte("\xef\xbb\xbf" + `{"token": "a.b.c"}`))
	f.Add([]byte(`{"token": "a.b.c"`))
	f.Add(body(strings.Repeat("a", 64<<10)))
	f.Add(body(strings.Repeat("e", 64<<10-len(`{"token":""}`))))
	f.Add([]byte(`{"token": {"token": "a.b.c"}}`))

	mintedFor := map[string]bool{}
	f.Fuzz(func(t *testing.T, b []byte) {
		events = events[:0] // the run's events would grow without end
		mintsBefore := minter.count
		req := httptest.NewRequest(http.MethodPost, PathMintToken, bytes.NewReader(b))
		req.RemoteAddr = "192.0.2.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		status, answer := rec.Code, rec.Body.Bytes()

		tok, strict := fzStrictToken(b)
		tok = strings.TrimSpace(tok)
		var rf Refusal
		switch {
		case status == http.StatusOK:
			var m Minted
			if err := json.Unmarshal(answer, &m); err != nil || !m.Success || m.Token != "devpi-FUZZMINTED" {
				t.Fatalf("200 without a minted token: %s", answer)
			}
			if !strict || !signed[tok] {
				t.Fatalf("minted for a body that is not {\"token\": <a token the issuer signed>}: %q", fzCap(b))
			}
			if mintedFor[tok] {
				t.Fatalf("minted twice for one identity token: %q", fzCap(b))
			}
			mintedFor[tok] = true
			if minter.count != mintsBefore+1 {
				t.Fatalf("200 with %d mints", minter.count-mintsBefore)
			}
		case json.Unmarshal(answer, &rf) != nil || rf.Message == "" || len(rf.Errors) == 0:
			t.Fatalf("%d without PyPI's body: %s", status, answer)
		case minter.count != mintsBefore:
			t.Fatalf("%d, yet a token was minted", status)
		case status == http.StatusBadRequest:
			if strict {
				t.Fatalf("a body of one token refused 400: %q", fzCap(b))
			}
			if c := rf.Codes(); len(c) != 1 || c[0] != CodeInvalidPayload {
				t.Fatalf("400 with codes %v", c)
			}
		case !strict:
			t.Fatalf("%d (%v), not 400, for a body that is not {\"token\": ...}: %q", status, rf.Codes(), fzCap(b))
		}
		if len(events) != 1 || (events[len(events)-1].Refused == nil) != (status == http.StatusOK) {
			t.Fatalf("%d audit events for one request answered %d", len(events), status)
		}
		// The identity token is never echoed (a long one: a short one
		// could be a word of any message).
		if strict && len(tok) >= 40 && strings.Count(tok, ".") == 2 {
			all, _ := json.Marshal(events)
			if bytes.Contains(answer, []byte(tok)) || bytes.Contains(all, []byte(tok)) {
				t.Fatalf("the identity token is echoed: %s / %s", answer, all)
			}
		}
	})
}

// A number claim is taken as the integer its JSON text says, or not at
// all: as a float64, 9007199254740993 was 9007199254740992 (another
// owner's id), and 4242.4 was "4242".
func TestStringClaimsNumbers(t *testing.T) {
	claims, err := decodeClaims([]byte(`{"repository_owner_id": 9007199254740993, "repository_id": 65, "a": 4242.4, "b": -0.4, ` +
		`"c": 1e3, "d": -17, "e": 4242.0, "f": "text", "g": true, "h": null, "i": [1], "j": {"k": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := stringClaims(claims)
	want := map[string]string{"repository_owner_id": "9007199254740993", "repository_id": "65", "d": "-17", "f": "text", "g": "true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("string claims %v, want %v", got, want)
	}
}

// FuzzStringClaims: a token's payload as the claims publishers match. A
// claim is taken as written: a string as itself, a boolean as "true" or
// "false", a number only when its JSON text is an integer, as that text
// (two ids never fold into one); nothing else is taken, and a derived
// claim is only ever workflow_file or ci_config_file.
func FuzzStringClaims(f *testing.F) {
	f.Add(fzGitHubClaims)
	f.Add(fzGitLabClaims)
	f.Add(`{"repository_owner_id": 9007199254740993, "repository_id": 9007199254740992}`)
	f.Add(`{"repository_owner_id": 4242.4, "project_id": -0.4, "namespace_id": 1e3, "x": -0, "y": 4242.0}`)
	f.Add(`{"n": 123456789012345678901234567890, "m": -1E-400, "o": 1e400}`)
	f.Add(`{"a": true, "b": null, "c": [1, "x"], "d": {"e": 1}, "f": ""}`)
	f.Add(`{"exp": 1700000900.5, "nbf": "1700000000"} {"x": 1}`)
	f.Fuzz(func(t *testing.T, payload string) {
		claims, err := decodeClaims([]byte(payload))
		if err != nil {
			return
		}
		derived := map[string]bool{"workflow_file": true, "ci_config_file": true}
		out := stringClaims(claims)
		for k, got := range out {
			if derived[k] {
				continue
			}
			switch v := claims[k].(type) {
			case string:
				if got != v {
					t.Fatalf("%s: %q taken as %q", k, v, got)
				}
			case bool:
				if got != fmt.Sprint(v) {
					t.Fatalf("%s: %v taken as %q", k, v, got)
				}
			case json.Number:
				digits := strings.TrimPrefix(string(v), "-")
				if got != string(v) || digits == "" || strings.Trim(digits, "0123456789") != "" {
					t.Fatalf("%s: the number %s taken as %q", k, v, got)
				}
			default:
				t.Fatalf("%s: %T %v taken as %q", k, v, v, got)
			}
		}
		for k, v := range claims {
			if _, taken := out[k]; taken || derived[k] {
				continue
			}
			switch v := v.(type) {
			case string, bool:
				t.Fatalf("%s: %v left out", k, v)
			case json.Number:
				if integerText(v) {
					t.Fatalf("%s: the integer %s left out", k, v)
				}
			}
		}
	})
}

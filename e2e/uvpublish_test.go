//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/token"
)

// newProjectPublisher sets up the exchange on the test bed's exchange
// port (behind nginx), its publisher scoped to one project as well as the
// index, as PyPI's always are, and the audience by the documented
// convention: the host name the tools reach the exchange at.
func newProjectPublisher(t *testing.T, project string) *publisherSetup {
	return setupPublisher(t, fmt.Sprintf("127.0.0.1:%d", bed.exchangePort), "127.0.0.1", `trusted_proxies = ["127.0.0.1"]`, fmt.Sprintf("projects = [%q]", project))
}

// twineAs uploads wheel to url as user with password, both from the
// environment (never on twine's command line).
func (u *user) twineAs(t *testing.T, url, user, password, wheel string) result {
	t.Helper()
	return u.runEnv(t, []string{"TWINE_USERNAME=" + user, "TWINE_PASSWORD=" + password, "COLUMNS=1000", "NO_COLOR=1"}, "",
		bed.py("client", "twine"), "upload", "--non-interactive", "--disable-progress-bar", "--verbose",
		"--repository-url", url, wheel)
}

// TestTrustedPublishingUV: `uv publish --trusted-publishing always` in a
// GitHub-Actions-shaped job, with no secret and no user name, through
// nginx (https: uv asks for PyPI's paths over https only) and
// devpi-lockdown: uv asks the exchange for its audience, GitHub's token
// service (the test issuer) for an identity token, trades it at the
// exchange and uploads as __token__, which the proxy snippet
// (packaging/nginx/devpi-credd-token-user.conf) turns into the empty user
// devpi-tokens takes. `twine upload -u __token__` with a token the exchange
// minted works the same way, with the token's devpi- prefix or without;
// the token's own scope still decides.
func TestTrustedPublishingUV(t *testing.T) {
	const project = "tp-uv"
	s := newProjectPublisher(t, project)
	s.serve(t)
	is := s.issuer
	indexURL := bed.lockedTLS + s.release + "/"

	// uv trusts nginx's CA and the issuer's (its token service) from one
	// file; SSL_CERT_FILE is enough, no --native-tls.
	caFile := s.u.writeFile(t, "ca.pem", string(bed.nginxCA)+string(is.CertPEM))
	env := []string{
		"GITHUB_ACTIONS=true", "ACTIONS_ID_TOKEN_REQUEST_URL=" + is.TokenURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + is.RequestToken,
		"SSL_CERT_FILE=" + caFile, "NO_COLOR=1",
	}
	mark := len(s.audit(t))
	r := s.u.runEnv(t, env, "", bed.py("client", "uv"), "publish", "--no-config", "--trusted-publishing", "always",
		"--publish-url", indexURL, s.u.wheel(t, project, "1.0"))
	// uv prints the token it traded for, for GitHub to mask in the job's
	// log (::add-mask::): the one token there is, the exchange's. Not in
	// this test's log.
	addMask := regexp.MustCompile(`(?m)^::add-mask::(\S+)$`)
	masked := addMask.FindStringSubmatch(r.stdout)
	r.stdout = addMask.ReplaceAllString(r.stdout, "::add-mask::(token)")
	if r.code != 0 || masked == nil {
		t.Fatalf("uv publish --trusted-publishing always: %s", r)
	}
	tok := parseToken(t, masked[1])
	if tok.User() != s.u.name || tok.Scope().Expires == nil {
		t.Errorf("uv traded for a token of %q expiring %v", tok.User(), tok.Scope().Expires)
	}
	if secret := tok.Reveal(); strings.Contains(r.stderr, secret[len(secret)-20:]) {
		t.Errorf("the token is in uv's log: %s", r)
	}
	// uv reports the token used at /_/oidc/burn-token after uploading, and
	// only warns when that fails: devpi tokens cannot be revoked alone.
	if strings.Contains(r.stderr, "invalidate trusted publishing token") {
		t.Logf("uv: the exchange did not take /_/oidc/burn-token: %s", r.stderr)
	}
	var got struct {
		Result map[string]any `json:"result"`
	}
	if err := bed.api("GET", s.release+"/"+project+"/1.0", s.u.name+":"+s.u.password, nil, &got); err != nil || got.Result == nil {
		t.Fatalf("uv's upload is not on the index: %v", err)
	}
	exchanged := 0
	for _, l := range s.audit(t)[mark:] {
		if l["event"] == "exchange" && l["publisher"] == "release" {
			exchanged++
		}
	}
	if exchanged != 1 {
		t.Errorf("%d exchange audit lines for uv's one exchange", exchanged)
	}

	// twine -u __token__, as the PyPA action runs it, with a token the
	// exchange minted, through the same proxy (plain http here).
	m := s.mint(t, bed.locked, jwtBody(is.Sign(map[string]any{"aud": "127.0.0.1"})))
	if m.Status != 200 {
		t.Fatalf("the exchange: %+v", m)
	}
	minted := parseToken(t, m.Token)
	mustUpload(t, s.u.twineAs(t, bed.locked+s.release+"/", "__token__", minted.Reveal(), s.u.wheel(t, project, "2.0")))
	// The prefix is optional to devpi-server, and to the snippet.
	bare := strings.TrimPrefix(minted.Reveal(), token.Prefix)
	mustUpload(t, s.u.twineAs(t, bed.locked+s.release+"/", "__token__", bare, s.u.wheel(t, project, "3.0")))
	for _, v := range []string{"2.0", "3.0"} {
		if err := bed.api("GET", s.release+"/"+project+"/"+v, s.u.name+":"+s.u.password, nil, &got); err != nil || got.Result == nil {
			t.Errorf("twine's upload of %s is not on the index: %v", v, err)
		}
	}
	// Only the user name is taken out: the token's project scope holds.
	mustRefuse(t, s.u.twineAs(t, bed.locked+s.release+"/", "__token__", minted.Reveal(), s.u.wheel(t, "tp-other", "1.0")), "Token denied access to project 'tp-other'")
	// Without the proxy devpi-tokens refuses the user name: what the
	// snippet is for.
	mustRefuse(t, s.u.twineAs(t, bed.url+s.release+"/", "__token__", minted.Reveal(), s.u.wheel(t, project, "4.0")), "Token doesn't match user name")
}

package exchange

import (
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/token"
)

// parseExchange loads an [exchange] for the test issuer, as the daemon
// loads its config.
func parseExchange(t *testing.T, issuer, publishers string) (*config.Exchange, error) {
	t.Helper()
	text := "socket = \"/run/x/socket\"\naudit_log = \"/var/log/audit.log\"\n[servers.local]\nurl = \"http://127.0.0.1:3141\"\n" +
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n" + strings.ReplaceAll(publishers, "ISSUER", issuer)
	c, err := config.Parse("c.toml", []byte(text), func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	return c.Exchange, nil
}

func releaseLimits() token.Limits {
	l, _ := token.ParseLimits([]string{"upload"}, []string{"team/release"}, nil)
	return l
}

// Hole 1 of issue 15: publishers whose claims named nobody loaded, and
// the exchange minted for strangers' jobs (evil/x, acmecorp2/x). Such a
// config no longer loads; the publisher it held, handed to the exchange
// as it was, still matches the stranger's token (which is what these
// tokens are: the attack), so the load is what stands in the way.
func TestPublisherNamingNobodyDoesNotLoad(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct {
		claims   string
		loose    map[string]string
		stranger map[string]any
	}{
		{`{ environment = "release" }`, map[string]string{"environment": "release"},
			map[string]any{"repository": "evil/x", "repository_owner": "evil", "repository_owner_id": "666", "environment": "release"}},
		{`{ workflow = "Release" }`, map[string]string{"workflow": "Release"},
			map[string]any{"repository": "evil/x", "repository_owner": "evil", "repository_owner_id": "666", "workflow": "Release"}},
		{`{ sub = "repo:acme*" }`, map[string]string{"sub": "repo:acme*"},
			map[string]any{"repository": "acmecorp2/x", "repository_owner": "acmecorp2", "repository_owner_id": "667", "sub": "repo:acmecorp2/x:ref:refs/tags/v1.0"}},
		{`{ repository_owner_id = "4242", job_workflow_ref = "acme*" }`, map[string]string{"repository_owner_id": "4242", "job_workflow_ref": "acme*"},
			map[string]any{"repository": "acme/app", "repository_owner_id": "4242", "job_workflow_ref": "acmecorp2/x/.github/workflows/release.yml@refs/heads/main"}},
	} {
		_, err := parseExchange(t, f.issuer.URL, "[[exchange.publishers]]\nname = \"loose\"\nserver = \"local\"\nissuer = \"ISSUER\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = "+c.claims+"\n")
		if err == nil {
			t.Errorf("%s: loaded", c.claims)
		} else if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "exchange.publishers loose: ") {
			t.Errorf("%s: %q is not one line naming the publisher", c.claims, err)
		}
		f.cfg.Store(&config.Exchange{Audience: "devpi", MaxTTL: 15 * time.Minute, Publishers: []config.Publisher{{
			Name: "loose", Server: "local", Issuer: f.issuer.URL, Limits: releaseLimits(), Claims: c.loose}}})
		c.stranger["aud"] = "devpi"
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(c.stranger))); status != 200 {
			t.Errorf("%s: the loose publisher, unloaded, did not match the stranger's token (%d %v): the test tokens are not the attack", c.claims, status, codes)
		}
	}
	// What loads instead names the repository, and refuses them.
	cfg, err := parseExchange(t, f.issuer.URL, "[[exchange.publishers]]\nname = \"pinned\"\nserver = \"local\"\nissuer = \"ISSUER\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { repository = \"acme/app\", environment = \"release\" }\n")
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.Store(cfg)
	for _, who := range []string{"evil/x", "acmecorp2/x", "acme/app2"} {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "repository": who, "environment": "release"}))); status != 422 || codes[0] != CodeInvalidPublisher {
			t.Errorf("%s: %d %v", who, status, codes)
		}
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "repository": "acme/app", "environment": "release"}))); status != 200 {
		t.Errorf("acme/app itself: %d %v", status, codes)
	}
}

// GitHub's names without case, as GitHub and PyPI compare them; ids and
// workflow files exactly; a GitLab environment exactly.
func TestMatchCase(t *testing.T) {
	f := newFixture(t, nil)
	cfg := f.cfg.Load()
	gh := cfg.Publishers[0]
	gh.Claims = map[string]string{"repository": "Org/Repo", "repository_owner_id": "4242", "workflow_file": "release.yml", "environment": "Release"}
	gl := config.Publisher{Name: "gl", Server: "local", Issuer: f.issuer.URL, Provider: "gitlab", Limits: releaseLimits(),
		Claims: map[string]string{"project_path": "Group/Proj", "environment": "Release"}}
	f.cfg.Store(&config.Exchange{Audience: "devpi", MaxTTL: cfg.MaxTTL, Publishers: []config.Publisher{gh, gl}})
	for _, c := range []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"the repository in other case", map[string]any{"repository": "ORG/repo", "job_workflow_ref": "ORG/repo/.github/workflows/release.yml@refs/tags/v1.0", "environment": "release"}, 200},
		{"the environment in other case", map[string]any{"environment": "RELEASE"}, 200},
		{"the owner id with a zero", map[string]any{"repository_owner_id": "04242", "environment": "Release"}, 422},
		{"the workflow file in other case", map[string]any{"job_workflow_ref": "org/repo/.github/workflows/Release.yml@refs/tags/v1.0", "environment": "Release"}, 422},
		{"a gitlab project in other case", map[string]any{"repository": nil, "project_path": "group/proj", "environment": "Release"}, 200},
		{"a gitlab environment in other case", map[string]any{"repository": nil, "project_path": "group/proj", "environment": "release"}, 422},
	} {
		c.claims["aud"] = "devpi"
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(c.claims))); status != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, status, codes, c.status)
		}
	}
}

// PyPI's rule: of publishers that both match, one naming an environment
// wins over one that does not, whichever comes first.
func TestEnvironmentWins(t *testing.T) {
	f := newFixture(t, nil)
	cfg := f.cfg.Load()
	general, specific := cfg.Publishers[0], cfg.Publishers[0]
	general.Budget, specific.Budget = 0, 0
	general.Name = "general"
	general.Limits, _ = token.ParseLimits([]string{"upload"}, []string{"team/dev"}, nil)
	specific.Name = "specific"
	specific.Claims = map[string]string{"repository": "org/repo", "repository_owner_id": "4242", "workflow_file": "release.yml", "environment": "release"}
	f.cfg.Store(&config.Exchange{Audience: "devpi", MaxTTL: cfg.MaxTTL, Publishers: []config.Publisher{general, specific}})
	for env, want := range map[string]string{"release": "specific", "Release": "specific", "staging": "general", "": "general"} {
		claims := map[string]any{"aud": "devpi"}
		if env != "" {
			claims["environment"] = env
		}
		f.minter.mu.Lock()
		f.minter.calls = nil
		f.minter.mu.Unlock()
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(claims))); status != 200 {
			t.Errorf("environment %q: %d %v", env, status, codes)
			continue
		}
		f.minter.mu.Lock()
		if len(f.minter.calls) != 1 || f.minter.calls[0].Name != want {
			t.Errorf("environment %q: minted for %v, want %s", env, f.minter.calls, want)
		}
		f.minter.mu.Unlock()
	}
}

// The github preset refuses tokens of pull_request_target and
// workflow_run, unless the publisher allows them: invalid-publisher, and
// the audit says why.
func TestRefusedEvents(t *testing.T) {
	f := newFixture(t, nil)
	cfg := *f.cfg.Load()
	cfg.Publishers = []config.Publisher{cfg.Publishers[0]}
	cfg.Publishers[0].Budget = 0
	f.cfg.Store(&cfg)
	for _, ev := range []string{"pull_request_target", "workflow_run"} {
		if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "event_name": ev}))); status != 422 || codes[0] != CodeInvalidPublisher {
			t.Errorf("%s: %d %v", ev, status, codes)
		}
		f.mu.Lock()
		last := f.events[len(f.events)-1]
		f.mu.Unlock()
		if !strings.Contains(last.Reason, `event_name "`+ev+`"`) || !strings.Contains(last.Reason, "allow_events") {
			t.Errorf("%s: the audit does not say why: %q", ev, last.Reason)
		}
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "event_name": "push"}))); status != 200 {
		t.Errorf("push: %d %v", status, codes)
	}
	allowing := cfg
	allowing.Publishers = []config.Publisher{cfg.Publishers[0]}
	allowing.Publishers[0].AllowEvents = []string{"workflow_run"}
	f.cfg.Store(&allowing)
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "event_name": "workflow_run"}))); status != 200 {
		t.Errorf("workflow_run, allowed: %d %v", status, codes)
	}
	if status, _, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi", "event_name": "pull_request_target"}))); status != 422 {
		t.Errorf("pull_request_target, workflow_run allowed: %d %v", status, codes)
	}
}

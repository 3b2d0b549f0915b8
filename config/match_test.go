package config

import (
	"strings"
	"testing"
)

const matchBase = exchangeBase + `
[exchange]
listen = "127.0.0.1:8181"
audience = "devpi"
`

// Hole 1 of issue 15: a publisher whose claims name nobody, or a prefix
// of a claim that begins with the owner, let anyone's job mint.
func TestPublisherMustNameSomebody(t *testing.T) {
	pub := func(claims string, extra ...string) string {
		return "[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = " + claims + "\n" + strings.Join(extra, "\n") + "\n"
	}
	for name, text := range map[string]string{
		"only an environment":      pub(`{ environment = "release" }`),
		"only a workflow name":     pub(`{ workflow = "Release" }`),
		"only a workflow file":     pub(`{ workflow_file = "release.yml" }`),
		"only the owner's name":    pub(`{ repository_owner = "acme" }`),
		"a prefix sub":             pub(`{ sub = "repo:acme*" }`),
		"a prefix sub and a ref":   pub(`{ sub = "repo:acme/app:*", ref = "refs/tags/v1" }`),
		"a prefix job_workflow":    pub(`{ repository_id = "1", job_workflow_ref = "acme/app/.github/workflows/*" }`),
		"a prefix workflow_ref":    pub(`{ repository_id = "1", workflow_ref = "acme/*" }`),
		"a prefix ci_config_ref":   pub(`{ project_id = "1", ci_config_ref_uri = "gitlab.com/acme/*" }`),
		"a prefix namespace_path":  pub(`{ project_id = "1", namespace_path = "acme*" }`),
		"a prefix job_project":     pub(`{ project_id = "1", job_project_path = "acme*" }`),
		"a github sub not a repo":  pub(`{ sub = "environment:release" }`),
		"a gitlab preset, no pin":  "[[exchange.publishers]]\nserver = \"local\"\nprovider = \"gitlab\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { project_path = \"g/p*\", ci_config_file = \".gitlab-ci.yml\" }\n",
		"only prefixes and a name": pub(`{ repository_owner = "acme", ref = "refs/tags/*" }`),
	} {
		_, err := Parse("c.toml", []byte(matchBase+text), env(nil))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "c.toml: exchange.publishers ") {
			t.Errorf("%s: error %q is not one line naming the publisher", name, err)
		}
	}
	for name, text := range map[string]string{
		"a repository":       pub(`{ repository = "acme/app" }`),
		"a repository id":    pub(`{ repository_id = "17" }`),
		"an owner id":        pub(`{ repository_owner_id = "4242", environment = "release" }`),
		"an exact sub":       pub(`{ sub = "repo:acme/app:environment:release" }`),
		"a gitlab project":   pub(`{ project_path = "acme/app" }`),
		"a gitlab id":        pub(`{ project_id = "9" }`),
		"a namespace id":     pub(`{ namespace_id = "9", ref = "refs/tags/v*" }`),
		"a prefix ref":       pub(`{ repository = "acme/app", ref = "refs/tags/v*" }`),
		"a prefix env":       pub(`{ repository = "acme/app", environment = "release-*" }`),
		"another issuer sub": strings.Replace(pub(`{ sub = "organization:acme:pipeline:release:ref:refs/tags/v1" }`), "token.actions.githubusercontent.com", "agent.buildkite.com", 1),
	} {
		if _, err := Parse("c.toml", []byte(matchBase+text), env(nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Hole 1, one line: the message says what to name.
func TestPublisherNamesNobodyMessage(t *testing.T) {
	_, err := Parse("c.toml", []byte(matchBase+"[[exchange.publishers]]\nname = \"rel\"\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { environment = \"release\" }\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "exchange.publishers rel: no claim says whose job it is") {
		t.Errorf("%v", err)
	}
	_, err = Parse("c.toml", []byte(matchBase+"[[exchange.publishers]]\nname = \"rel\"\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { sub = \"repo:acme*\" }\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `claims.sub = "repo:acme*": a prefix of sub matches others' too`) {
		t.Errorf("%v", err)
	}
}

// Case rules as GitHub's and GitLab's (and PyPI's): names of
// repositories, owners and projects fold case; ids never; an environment
// folds on GitHub, not on GitLab, where "Release" and "release" are two.
func TestClaimMatches(t *testing.T) {
	gh := Publisher{Provider: "github", Issuer: GitHubIssuer, Claims: map[string]string{
		"repository": "Acme/App", "repository_owner": "acme", "repository_owner_id": "4242", "environment": "Release", "ref": "refs/tags/v*", "workflow_file": "release.yml"}}
	gl := Publisher{Provider: "gitlab", Issuer: "https://gitlab.example", Claims: map[string]string{
		"project_path": "Group/Proj", "namespace_path": "group", "project_id": "12", "environment": "Release"}}
	other := Publisher{Issuer: "https://ci.example", Claims: map[string]string{"environment": "Release", "repository": "acme/app"}}
	for _, c := range []struct {
		p          Publisher
		claim, got string
		want       bool
	}{
		{gh, "repository", "acme/app", true},
		{gh, "repository", "ACME/APP", true},
		{gh, "repository", "acme/app2", false},
		{gh, "repository", "", false},
		{gh, "repository_owner", "ACME", true},
		{gh, "repository_owner_id", "4242", true},
		{gh, "repository_owner_id", "04242", false},
		{gh, "environment", "release", true},
		{gh, "environment", "RELEASE", true},
		{gh, "environment", "", false},
		{gh, "ref", "refs/tags/v1", true},
		{gh, "ref", "refs/Tags/v1", false},
		{gh, "ref", "refs/heads/main", false},
		{gh, "workflow_file", "Release.yml", false},
		{gh, "repository", "acme/\u212app", false}, // the Kelvin sign folds to k in Unicode; not ours
		{gl, "project_path", "group/proj", true},
		{gl, "namespace_path", "GROUP", true},
		{gl, "project_id", "12", true},
		{gl, "environment", "Release", true},
		{gl, "environment", "release", false},
		{other, "environment", "release", false},
		{other, "repository", "Acme/App", true},
	} {
		if got := c.p.ClaimMatches(c.claim, c.got); got != c.want {
			t.Errorf("%s %s=%q against %q: %v, want %v", c.p.Issuer, c.claim, c.p.Claims[c.claim], c.got, got, c.want)
		}
	}
}

// The github preset refuses pull_request_target (a fork's code with the
// base's secrets) and workflow_run (started by another workflow, maybe a
// fork's) unless the publisher names them in allow_events.
func TestEventNames(t *testing.T) {
	claims := map[string]string{"repository": "acme/app", "event_name": "push"}
	gh := Publisher{Provider: "github", Issuer: GitHubIssuer, Claims: map[string]string{"repository": "acme/app"}}
	if bad := gh.Mismatches(claims); len(bad) != 0 {
		t.Errorf("push: %v", bad)
	}
	for _, ev := range []string{"pull_request_target", "workflow_run", ""} {
		claims["event_name"] = ev
		if bad := gh.Mismatches(claims); len(bad) != 1 || bad[0] != ClaimEventName {
			t.Errorf("%q: %v", ev, bad)
		}
	}
	delete(claims, "event_name")
	if bad := gh.Mismatches(claims); len(bad) != 1 {
		t.Errorf("no event_name on a github publisher: %v", bad)
	}
	gh.AllowEvents = []string{"workflow_run"}
	claims["event_name"] = "workflow_run"
	if bad := gh.Mismatches(claims); len(bad) != 0 {
		t.Errorf("workflow_run allowed: %v", bad)
	}
	claims["event_name"] = "pull_request_target"
	if bad := gh.Mismatches(claims); len(bad) != 1 {
		t.Errorf("pull_request_target, only workflow_run allowed: %v", bad)
	}
	// Without the preset, on GitHub's issuer: the same rule.
	bare := Publisher{Issuer: GitHubIssuer, Claims: map[string]string{"repository": "acme/app"}}
	if bad := bare.Mismatches(claims); len(bad) != 1 {
		t.Errorf("pull_request_target on GitHub's issuer, no preset: %v", bad)
	}
	// Another CI's tokens have no event_name.
	other := Publisher{Issuer: "https://ci.example", Claims: map[string]string{"repository": "acme/app"}}
	if bad := other.Mismatches(map[string]string{"repository": "acme/app"}); len(bad) != 0 {
		t.Errorf("another issuer: %v", bad)
	}

	load := func(extra string) error {
		_, err := Parse("c.toml", []byte(matchBase+"[[exchange.publishers]]\nserver = \"local\"\nprovider = \"github\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { repository = \"a/b\", repository_owner_id = \"1\", workflow_file = \"r.yml\" }\n"+extra), env(nil))
		return err
	}
	if err := load("allow_events = [\"workflow_run\", \"pull_request_target\"]\n"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"allow_events = [\"push\"]\n", "allow_events = [\"workflow_run\", \"\"]\n"} {
		if err := load(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	_, err := Parse("c.toml", []byte(matchBase+"[[exchange.publishers]]\nserver = \"local\"\nprovider = \"gitlab\"\nindexes = [\"team/release\"]\nany_project = true\nallow_events = [\"workflow_run\"]\nclaims = { project_path = \"a/b\", ci_config_file = \".gitlab-ci.yml\" }\n"), env(nil))
	if err == nil {
		t.Error("allow_events on a gitlab publisher: accepted")
	}
}

// A publisher limited to indexes says so: devpi-tokens has no project
// wildcard, and PyPI's tokens always name projects.
func TestAnyProject(t *testing.T) {
	load := func(scope string) (*Config, error) {
		return Parse("c.toml", []byte(matchBase+"[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://ci.example\"\nclaims = { repository = \"a/b\" }\n"+scope), env(nil))
	}
	for scope, ok := range map[string]bool{
		"indexes = [\"team/release\"]\n":                                           false,
		"indexes = [\"team/release\"]\nany_project = true\n":                       true,
		"indexes = [\"team/release\"]\nprojects = [\"foo\"]\n":                     true,
		"projects = [\"foo\"]\n":                                                   true,
		"indexes = [\"team/release\"]\nprojects = [\"foo\"]\nany_project = true\n": false,
		"any_project = true\n":                                                     false,
	} {
		c, err := load(scope)
		if (err == nil) != ok {
			t.Errorf("%q: %v", scope, err)
			continue
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %q is not one line", scope, err)
		}
		if ok && c.Exchange.Publishers[0].AnyProject != strings.Contains(scope, "any_project") {
			t.Errorf("%q: AnyProject %v", scope, c.Exchange.Publishers[0].AnyProject)
		}
	}
}

// Publishers that one identity could match: one naming an environment
// wins over one that does not (PyPI's rule); any other pair with
// different scopes is refused at load.
func TestPublishersOverlap(t *testing.T) {
	pub := func(name, claims, scope string) string {
		return "[[exchange.publishers]]\nname = \"" + name + "\"\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nclaims = " + claims + "\n" + scope + "\n"
	}
	const rel, dev = `indexes = ["team/release"]` + "\nany_project = true", `indexes = ["team/dev"]` + "\nany_project = true"
	for name, c := range map[string]struct {
		text string
		ok   bool
	}{
		"two repositories":           {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "acme/b" }`, dev), true},
		"one repository, two scopes": {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/tags/*" }`, dev), false},
		"same scope":                 {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/tags/*" }`, rel), true},
		"case of a repository":       {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "Acme/A" }`, dev), false},
		"case of a ref":              {pub("a", `{ repository = "acme/a", ref = "refs/tags/v1" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/Tags/v1" }`, dev), true},
		"disjoint refs":              {pub("a", `{ repository = "acme/a", ref = "refs/tags/*" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/heads/*" }`, dev), true},
		"nested prefixes":            {pub("a", `{ repository = "acme/a", ref = "refs/tags/*" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/*" }`, dev), false},
		"a prefix and its value":     {pub("a", `{ repository = "acme/a", ref = "refs/tags/v1" }`, rel) + pub("b", `{ repository = "acme/a", ref = "refs/tags/*" }`, dev), false},
		"other claims":               {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository_id = "17" }`, dev), false},
		"other issuers":              {pub("a", `{ repository = "acme/a" }`, rel) + strings.Replace(pub("b", `{ repository = "acme/a" }`, dev), "token.actions.githubusercontent.com", "ci.example", 1), true},
		"environment on one":         {pub("a", `{ repository = "acme/a", environment = "release" }`, rel) + pub("b", `{ repository = "acme/a" }`, dev), true},
		"the same environment":       {pub("a", `{ repository = "acme/a", environment = "release" }`, rel) + pub("b", `{ repository = "acme/a", environment = "Release" }`, dev), false},
		"two environments":           {pub("a", `{ repository = "acme/a", environment = "release" }`, rel) + pub("b", `{ repository = "acme/a", environment = "staging" }`, dev), true},
		"another budget":             {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "acme/a" }`, rel+"\nbudget = 5"), false},
		"other permissions":          {pub("a", `{ repository = "acme/a" }`, rel) + pub("b", `{ repository = "acme/a" }`, rel+"\nallowed = [\"upload\", \"pkg_read\"]"), false},
		"other projects":             {pub("a", `{ repository = "acme/a" }`, `projects = ["x"]`) + pub("b", `{ repository = "acme/a" }`, `projects = ["y"]`), false},
	} {
		_, err := Parse("c.toml", []byte(matchBase+c.text), env(nil))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err != nil && (strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "exchange.publishers a and b")) {
			t.Errorf("%s: %q", name, err)
		}
	}
}

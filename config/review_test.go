package config

import (
	"strings"
	"testing"
)

// Hole 1 of issue 15, claim by claim: every claim that begins with, or
// is, an owner, repository, project, namespace or their ids (GitHub's and
// GitLab's) takes no prefix, even beside an exact pin. Written out here,
// not read from the code's own list, so that a name dropped from it fails.
func TestNoPrefixOfWhoseJobItIs(t *testing.T) {
	for _, claim := range []string{
		"sub", "repository", "repository_owner", "repository_owner_id", "repository_id",
		"workflow_file", "job_workflow_ref", "workflow_ref",
		"project_path", "project_id", "namespace_path", "namespace_id",
		"job_project_path", "job_project_id", "job_namespace_path", "job_namespace_id",
		"ci_config_file", "ci_config_ref_uri",
	} {
		pin := `project_id = "1"`
		if claim == "project_id" {
			pin = `repository_id = "1"`
		}
		text := matchBase + "[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://ci.example\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { " + pin + ", " + claim + " = \"acme*\" }\n"
		_, err := Parse("c.toml", []byte(text), env(nil))
		if err == nil || !strings.Contains(err.Error(), "claims."+claim+` = "acme*": a prefix`) {
			t.Errorf("%s = \"acme*\": %v", claim, err)
		}
	}
}

// Two publishers that one token could match, alike but for their server:
// which server's token a job got would depend on the file's order.
func TestPublishersOverlapAcrossServers(t *testing.T) {
	text := matchBase + `
[servers.other]
url = "http://127.0.0.2:3141"
indexes = ["team/release", "team/dev"]
` + "[[exchange.publishers]]\nname = \"a\"\nserver = \"local\"\nissuer = \"https://ci.example\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { repository = \"acme/a\" }\n" +
		"[[exchange.publishers]]\nname = \"b\"\nserver = \"other\"\nissuer = \"https://ci.example\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { repository = \"acme/a\" }\n"
	_, err := Parse("c.toml", []byte(text), env(nil))
	if err == nil || !strings.Contains(err.Error(), "exchange.publishers a and b could both match") {
		t.Errorf("two servers, one identity: %v", err)
	}
}

// Names fold ASCII case only: in Unicode the Kelvin sign (U+212A) folds
// to "k", which would let "acme/\u212ait" be "acme/kit". (TestClaimMatches'
// own Kelvin case, "acme/\u212app" against "Acme/App", has no k to stand
// for, so it holds under any folding.)
func TestClaimMatchesFoldsASCIIOnly(t *testing.T) {
	p := Publisher{Provider: "github", Issuer: GitHubIssuer, Claims: map[string]string{"repository": "acme/kit", "repository_owner": "kacme"}}
	for claim, got := range map[string]string{"repository": "acme/\u212ait", "repository_owner": "\u212aacme"} {
		if p.ClaimMatches(claim, got) {
			t.Errorf("%s %q matched %q", claim, got, p.Claims[claim])
		}
	}
	if !p.ClaimMatches("repository", "ACME/KIT") {
		t.Error("ASCII case is folded")
	}
}

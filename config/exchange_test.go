package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const exchangeBase = `
[servers.local]
url = "http://127.0.0.1:3141"
indexes = ["team/release", "team/dev"]
`

func TestExchange(t *testing.T) {
	c, err := Parse("c.toml", []byte(exchangeBase+`
[exchange]
listen = "127.0.0.1:8181"
audience = "devpi"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1", "192.168.0.0/16", "::ffff:172.16.0.0/108", "::ffff:127.0.0.2"]

[[exchange.publishers]]
server = "local"
provider = "github"
indexes = ["team/release"]
any_project = true
claims = { repository = "org/repo", repository_owner_id = "4242", workflow_file = "release.yml", ref = "refs/tags/v*" }

[[exchange.publishers]]
name = "gl"
server = "local"
issuer = "https://gitlab.example"
provider = "gitlab"
indexes = ["team/dev"]
projects = ["foo"]
allowed = ["upload", "pkg_read"]
budget = 0
claims = { project_path = "group/foo", ci_config_file = ".gitlab-ci.yml", ref_path = "refs/tags/*" }
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Exchange
	if e == nil || e.Listen != "127.0.0.1:8181" || e.Audience != "devpi" || e.MaxTTL != 15*time.Minute || len(e.Publishers) != 2 {
		t.Fatalf("%+v", e)
	}
	if fmt.Sprint(e.TrustedProxies) != "[127.0.0.1/32 10.0.0.0/8 ::1/128 192.168.0.0/16 172.16.0.0/12 127.0.0.2/32]" {
		t.Errorf("trusted proxies: %v", e.TrustedProxies)
	}
	gh, gl := e.Publishers[0], e.Publishers[1]
	if gh.Name != "publisher-1" || gh.Issuer != "https://token.actions.githubusercontent.com" || gh.Budget != DefaultExchangeBudget ||
		strings.Join(gh.Limits.Allowed, ",") != "upload" || strings.Join(gh.Limits.Indexes, ",") != "team/release" || gh.Limits.Projects != nil {
		t.Errorf("github publisher: %+v", gh)
	}
	if gl.Name != "gl" || gl.Issuer != "https://gitlab.example" || gl.Budget != 0 || len(gl.Limits.Allowed) != 2 || strings.Join(gl.Limits.Projects, ",") != "foo" {
		t.Errorf("gitlab publisher: %+v", gl)
	}
	if got := strings.Join(gh.ClaimNames(), ","); got != "ref,repository,repository_owner_id,workflow_file" {
		t.Errorf("claim names: %s", got)
	}
}

func TestExchangeRejects(t *testing.T) {
	const ok = "[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n"
	const pub = "[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://ci.example\"\nindexes = [\"team/release\"]\nany_project = true\nclaims = { repository = \"org/repo\" }\n"
	for name, text := range map[string]string{
		"no listen":        "[exchange]\naudience = \"devpi\"\n" + pub,
		"bad listen":       "[exchange]\nlisten = \"8181\"\naudience = \"devpi\"\n" + pub,
		"no audience":      "[exchange]\nlisten = \"127.0.0.1:8181\"\n" + pub,
		"bad ttl":          ok + "max_ttl = \"soon\"\n" + pub,
		"cert without key": ok + "tls_cert = \"/c.pem\"\n" + pub,
		"relative replay":  ok + "replay_dir = \"replay\"\n" + pub,
		"unknown key":      ok + "listn = \"x\"\n" + pub,
		"no publishers":    ok,
		"a proxy name":     ok + "trusted_proxies = [\"nginx\"]\n" + pub,
		"a proxy port":     ok + "trusted_proxies = [\"127.0.0.1:80\"]\n" + pub,
		"a proxy zone":     ok + "trusted_proxies = [\"fe80::1%eth0\"]\n" + pub,
		"proxy host bits":  ok + "trusted_proxies = [\"192.168.1.7/16\"]\n" + pub,
		"every v4 proxy":   ok + "trusted_proxies = [\"0.0.0.0/0\"]\n" + pub,
		"every v6 proxy":   ok + "trusted_proxies = [\"::/0\"]\n" + pub,
		"mapped v4 /0":     ok + "trusted_proxies = [\"::ffff:0:0/96\"]\n" + pub,
		"half of v4":       ok + "trusted_proxies = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n" + pub,
		"a v6 /16":         ok + "trusted_proxies = [\"2001::/16\"]\n" + pub,
		"link-local":       ok + "trusted_proxies = [\"fe80::/10\"]\n" + pub,
		"unknown server":   ok + strings.Replace(pub, `"local"`, `"other"`, 1),
		"http issuer":      ok + strings.Replace(pub, "https://ci", "http://ci", 1),
		"unknown provider": ok + pub + "provider = \"jenkins\"\n",
		"no claims":        ok + strings.Replace(pub, "claims = { repository = \"org/repo\" }\n", "", 1),
		"a star claim":     ok + strings.Replace(pub, `"org/repo"`, `"*"`, 1),
		"an empty claim":   ok + strings.Replace(pub, `"org/repo"`, `" "`, 1),
		"no scope":         ok + strings.Replace(pub, "indexes = [\"team/release\"]\n", "", 1),
		"negative budget":  ok + pub + "budget = -1\n",
		"github, no wf":    ok + pub + "provider = \"github\"\n",
		"github, no file":  ok + strings.Replace(pub, `repository = "org/repo"`, `repository = "org/repo", repository_owner_id = "42"`, 1) + "provider = \"github\"\n",
		"gitlab, no path":  ok + pub + "provider = \"gitlab\"\n",
		"a name twice":     ok + pub + "name = \"a\"\n" + pub + "name = \"a\"\n",
		"unknown pub key":  ok + pub + "indexs = [\"x/y\"]\n",
		"PyPI's audience":  "[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"PyPI\"\n" + pub,
		"a star only":      ok + strings.Replace(pub, `"org/repo"`, `"org/repo", ref = " *"`, 1),
		"only prefixes":    ok + strings.Replace(pub, `repository = "org/repo"`, `ref = "refs/tags/v*"`, 1),
		// A prefix of whose job it is matches others': "acme*" is also
		// the group acmecorp2 that anyone can create.
		"a prefix project":    ok + strings.Replace(pub, `repository = "org/repo"`, `project_path = "acme*", ref = "refs/tags/v1"`, 1),
		"a prefix repository": ok + strings.Replace(pub, `repository = "org/repo"`, `repository = "acme*", ref = "refs/tags/v1"`, 1),
		"a prefix owner id":   ok + strings.Replace(pub, `repository = "org/repo"`, `repository = "org/repo", repository_owner_id = "42*"`, 1),
		"a prefix workflow":   ok + strings.Replace(pub, `repository = "org/repo"`, `repository = "org/repo", workflow_file = "r*"`, 1),
		"gitlab, no file":     ok + strings.Replace(pub, `repository = "org/repo"`, `project_path = "g/p"`, 1) + "provider = \"gitlab\"\n",
	} {
		_, err := Parse("c.toml", []byte(exchangeBase+text), env(nil))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "c.toml: ") {
			t.Errorf("%s: error %q is not one line naming the file", name, err)
		}
	}
}

// A bad config is refused with the same error every time: the claims are
// checked in the order of their names, not of a map's walk.
func TestExchangeClaimErrorIsStable(t *testing.T) {
	text := exchangeBase + "[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n" +
		"[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\n" +
		"claims = { ref_path = \"*\", project_path = \"group*\", x = \"y\" }\n"
	_, first := Parse("c.toml", []byte(text), env(nil))
	if first == nil || !strings.Contains(first.Error(), "claims.project_path") {
		t.Fatalf("first error %v, want project_path's (the first name in order)", first)
	}
	for i := 0; i < 50; i++ {
		if _, err := Parse("c.toml", []byte(text), env(nil)); err == nil || err.Error() != first.Error() {
			t.Fatalf("loaded again: %v, first %v", err, first)
		}
	}
}

// Viper lower-cases keys and turns any value into the string a field
// wants: a claim written Ref, two claims that differ by case, or a claim
// value that is not a string would be matched as something else than
// written (ref_protected = true becomes "1", the token's is "true"), so
// they are refused, on one line that says what to write.
func TestExchangeClaimsAsWritten(t *testing.T) {
	const head = "[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n" +
		"[[exchange.publishers]]\nname = \"rel\"\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\n"
	for _, tt := range []struct{ claims, want string }{
		{`claims = { project_path = "org/repo", ref = "a", Ref = "b" }`, `claims.Ref and claims.ref differ only by case`},
		{`claims = { project_path = "org/repo", Ref = "x" }`, `claims.Ref: claim names are lower-case`},
		{`claims = { PROJECT_PATH = "org/repo" }`, `claims.PROJECT_PATH: claim names are lower-case`},
		{`claims = { project_path = "org/repo", ref_protected = true }`, `claims.ref_protected = true is not a string: quote it, ref_protected = "true"`},
		{`claims = { project_path = "org/repo", project_id = 20 }`, `claims.project_id = 20 is not a string: quote it, project_id = "20"`},
		{`claims = { project_path = "org/repo", ref = ["a", "b"] }`, `claims.ref is not a string`},
		{"[exchange.publishers.claims]\nproject_path = \"org/repo\"\nRef = \"x\"", `claims.Ref: claim names are lower-case`},
		{"[exchange.publishers.Claims]\nproject_path = \"org/repo\"\nn = 1", `claims.n = 1 is not a string`},
	} {
		_, err := Parse("c.toml", []byte(exchangeBase+head+tt.claims+"\n"), env(nil))
		if err == nil || !strings.Contains(err.Error(), "exchange.publishers rel: "+tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", tt.claims, err, tt.want)
		}
	}
	c, err := Parse("c.toml", []byte(exchangeBase+head+`claims = { project_path = "org/repo", ref_protected = "true", "namespace.x" = "y" }`+"\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Exchange.Publishers[0].Claims); got != "map[namespace.x:y project_path:org/repo ref_protected:true]" {
		t.Errorf("claims %s", got)
	}
}

// Two bad servers: the error names the first by name, every time.
func TestServerErrorIsStable(t *testing.T) {
	text := "[servers.b]\nurl = \"ftp://h/\"\n[servers.a]\nurl = \"ftp://h/\"\n[servers.c]\nurl = \"ftp://h/\"\n"
	for i := 0; i < 50; i++ {
		if _, err := Parse("c.toml", []byte(text), env(nil)); err == nil || !strings.HasPrefix(err.Error(), "c.toml: servers.a: ") {
			t.Fatalf("%v, want servers.a's error", err)
		}
	}
}

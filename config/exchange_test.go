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

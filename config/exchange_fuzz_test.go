package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The exchange's config decides who may mint upload tokens from the
// internet: its fuzz targets check what every config that loads holds, not
// only that loading does not panic.

const fzServers = `
[servers.local]
url = "http://127.0.0.1:3141"
indexes = ["team/release", "team/dev"]
`

// fzCheckExchange is what every loaded [exchange] holds.
func fzCheckExchange(t *testing.T, c *Config) {
	t.Helper()
	e := c.Exchange
	if e == nil {
		return
	}
	if _, _, err := net.SplitHostPort(e.Listen); err != nil {
		t.Fatalf("listen %q taken", e.Listen)
	}
	if strings.TrimSpace(e.Audience) == "" || slices.Contains(PyPIAudiences, strings.ToLower(e.Audience)) {
		t.Fatalf("audience %q taken", e.Audience)
	}
	if e.MaxTTL <= 0 {
		t.Fatalf("max_ttl %v taken", e.MaxTTL)
	}
	if (e.TLSCert == "") != (e.TLSKey == "") {
		t.Fatalf("tls_cert %q without tls_key %q, or the other way", e.TLSCert, e.TLSKey)
	}
	for _, p := range []string{e.TLSCert, e.TLSKey, e.ReplayDir} {
		if p != "" && !filepath.IsAbs(p) {
			t.Fatalf("relative path %q taken", p)
		}
	}
	for _, p := range e.TrustedProxies {
		min := 32
		if p.Addr().Is4() {
			min = 8
		}
		if !p.IsValid() || p != p.Masked() || p.Bits() < min || p.Addr().Is4In6() || p.Addr().Zone() != "" ||
			(p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
			t.Fatalf("trusted proxy %v taken", p)
		}
	}
	if len(e.Publishers) == 0 {
		t.Fatal("an exchange of no publisher taken")
	}
	names := map[string]bool{}
	for _, p := range e.Publishers {
		fzCheckPublisher(t, c, p)
		if names[p.Name] {
			t.Fatalf("publisher name %q twice", p.Name)
		}
		names[p.Name] = true
	}
}

func fzCheckPublisher(t *testing.T, c *Config, p Publisher) {
	t.Helper()
	if p.Name == "" {
		t.Fatal("a publisher without a name")
	}
	if _, ok := c.Server(p.Server); !ok {
		t.Fatalf("%s: server %q is none of the config's", p.Name, p.Server)
	}
	if u, err := url.Parse(p.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		t.Fatalf("%s: issuer %q taken", p.Name, p.Issuer)
	}
	if p.Limits.Indexes == nil && p.Limits.Projects == nil {
		t.Fatalf("%s: limited to no index and no project", p.Name)
	}
	if p.Budget < 0 {
		t.Fatalf("%s: budget %d", p.Name, p.Budget)
	}
	if _, ok := map[string]bool{"": true, ProviderGitHub: true, ProviderGitLab: true}[p.Provider]; !ok {
		t.Fatalf("%s: provider %q taken", p.Name, p.Provider)
	}
	for _, k := range providerClaims[p.Provider] {
		if _, ok := p.Claims[k]; !ok {
			t.Fatalf("%s: a %s publisher without claims.%s", p.Name, p.Provider, k)
		}
	}
	// The claims as written: viper would lower-case names and turn
	// values into strings, which the raw check refuses first.
	for k, v := range p.Claims {
		prefix, isPrefix := strings.CutSuffix(v, "*")
		switch {
		case k != strings.ToLower(k):
			t.Fatalf("%s: claims.%s: a name not in lower case", p.Name, k)
		case strings.TrimSpace(prefix) == "":
			t.Fatalf("%s: claims.%s = %q matches anything", p.Name, k, v)
		case isPrefix && exactClaims[k]:
			t.Fatalf("%s: claims.%s = %q: a prefix of whose job, or which workflow, it is", p.Name, k, v)
		}
	}
	// Whose job it is, exactly: one of pinningClaims (exact, by the
	// above), or an exact sub, which on GitHub begins with the
	// repository.
	pinned := false
	for _, k := range pinningClaims {
		if v, ok := p.Claims[k]; ok && !strings.HasSuffix(v, "*") {
			pinned = true
		}
	}
	github := p.Provider == ProviderGitHub || (p.Provider == "" && p.Issuer == GitHubIssuer)
	if sub, ok := p.Claims["sub"]; ok && !strings.HasSuffix(sub, "*") && (!github || strings.HasPrefix(sub, "repo:")) {
		pinned = true
	}
	if !pinned {
		t.Fatalf("%s: nothing says whose job it is in %q", p.Name, p.Claims)
	}
}

// FuzzExchangeConfig: any [exchange] table after a valid [servers]. What
// loads holds fzCheckExchange, loads again the same, and what is refused
// is refused on one line.
func FuzzExchangeConfig(f *testing.F) {
	for _, table := range []string{
		`
[exchange]
listen = "127.0.0.1:8181"
audience = "devpi.example.com"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1", "::ffff:172.16.0.0/108"]

[[exchange.publishers]]
name = "release"
server = "local"
provider = "github"
indexes = ["team/release"]
projects = ["octo-pkg"]
budget = 10
claims = { repository = "octo-org/octo-repo", repository_owner_id = "65", workflow_file = "release.yml", environment = "release", ref = "refs/tags/v*" }

[[exchange.publishers]]
name = "gitlab"
server = "local"
issuer = "https://gitlab.example.com"
provider = "gitlab"
indexes = ["team/dev"]
allowed = ["upload", "pkg_read"]
budget = 0
claims = { project_path = "group/project", ci_config_file = ".gitlab-ci.yml", ref_path = "refs/tags/*" }
`,
		`
[exchange]
listen = "[::1]:8443"
audience = "devpi"
max_ttl = "5m"
tls_cert = "/etc/devpi-credd/cert.pem"
tls_key = "/etc/devpi-credd/key.pem"
replay_dir = "/var/lib/devpi-credd/replay"
[[exchange.publishers]]
server = "local"
issuer = "https://token.actions.githubusercontent.com"
projects = ["octo-pkg"]
claims = { sub = "repo:octo-org/octo-repo:environment:release", job_workflow_ref = "octo-org/octo-repo/.github/workflows/*" }
`,
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nindexes = [\"team/release\"]\nclaims = { environment = \"release\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nindexes = [\"team/release\"]\nclaims = { namespace_path = \"acme*\", ref = \"*\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"PyPI\"\n",
		"[exchange]\nlisten = \"8181\"\naudience = \"devpi\"\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\ntrusted_proxies = [\"0.0.0.0/0\", \"fe80::1\", \"10.1.2.3/8\", \"::ffff:1.2.3.4\"]\n[[exchange.publishers]]\nserver = \"local\"\nprovider = \"github\"\nindexes = []\nclaims = { repository = \"a/b\", repository_owner_id = 1, workflow_file = \"r.yml\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nname = \"a\"\nserver = \"nope\"\nissuer = \"http://x\"\nbudget = -1\nclaims = { \" \" = \" *\" }\n[[exchange.publishers]]\nname = \"a\"\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nname = \"a\"\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nindexes = [\"team/release\"]\nclaims = { project_path = \"g/p\" }\n" +
			"[[exchange.publishers]]\nname = \"a\"\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nindexes = [\"team/dev\"]\nclaims = { project_path = \"g/q\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\nclaims = { ref_path = \"refs/tags/*\", project_path = \"group*\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\nclaims = { ref_path = \"refs/tags/*\", environment = \"prod*\" }\n",
		"[exchange]\n",
		"exchange = 3\n",
		// Two bad claims: the error is the first's by name, every time.
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\nclaims = { ref_path = \"*\", project_path = \"group*\", x = \"y\" }\n",
		// What viper would lower-case or turn into a string.
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\nclaims = { project_path = \"org/repo\", ref = \"a\", Ref = \"b\" }\n",
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\n[exchange.publishers.Claims]\nProject_Path = \"org/repo\"\nref_protected = true\nproject_id = 20\n",
		"[Exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[Exchange.Publishers]]\nserver = \"local\"\nissuer = \"https://gitlab.com\"\nprojects = [\"p\"]\nclaims = { project_path = \"org/repo\", ref_protected = 1979-05-27 }\n",
		// sub pins a GitHub job only when it begins with the repository.
		"[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi\"\n[[exchange.publishers]]\nserver = \"local\"\nissuer = \"https://token.actions.githubusercontent.com\"\nprojects = [\"p\"]\nclaims = { sub = \"environment:release\" }\n",
	} {
		f.Add([]byte(table))
	}
	get := env(map[string]string{"HOME": "/h"})
	f.Fuzz(func(t *testing.T, table []byte) {
		data := append([]byte(fzServers), table...)
		c, err := Parse("c.toml", data, get)
		again, errAgain := Parse("c.toml", data, get)
		if fmt.Sprint(err) != fmt.Sprint(errAgain) {
			t.Fatalf("loaded twice, two errors: %v, then %v", err, errAgain)
		}
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		fzCheckExchange(t, c)
		if fmt.Sprintf("%+v", again.Exchange) != fmt.Sprintf("%+v", c.Exchange) {
			t.Fatalf("loaded twice, two answers: %+v, then %+v", c.Exchange, again.Exchange)
		}
	})
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzExchangeClaims: one publisher of any provider, issuer and claims
// (NAME=VALUE lines). What loads holds fzCheckExchange and keeps every
// claim as written: a name viper would lower-case is refused.
func FuzzExchangeClaims(f *testing.F) {
	f.Add("github", "", "repository=octo-org/octo-repo\nrepository_owner_id=65\nworkflow_file=release.yml\nenvironment=release\nref=refs/tags/v*")
	f.Add("gitlab", "https://gitlab.example.com", "project_path=group/project\nci_config_file=.gitlab-ci.yml\nref_path=refs/tags/*")
	f.Add("", "https://token.actions.githubusercontent.com", "environment=release")
	f.Add("", "https://token.actions.githubusercontent.com", "workflow=Release")
	f.Add("", "https://token.actions.githubusercontent.com", "sub=repo:acme*\nrepository=acme/x")
	f.Add("", "https://gitlab.com", "namespace_id=72\nref_path=*")
	f.Add("", "https://buildkite.com", "organization_slug=acme\npipeline_slug=release\nhttps://example.com/claim=x")
	f.Add("", "https://accounts.google.com", "email=ci@acme.iam.gserviceaccount.com\nemail_verified=true")
	f.Add("github", "https://ghe.example.com/_services/token", "repository=a/b\nrepository_owner_id=1\nworkflow_file=r.yml\nrepository_id= *")
	f.Add("", "https://x", "a.b=c\na::b=d\n=e")
	f.Add("", "https://token.actions.githubusercontent.com", "ref=refs/tags/*\nenvironment=rel*")
	f.Add("", "https://token.actions.githubusercontent.com", "repository=acme*\nenvironment=release")
	f.Add("", "https://gitlab.com", "namespace_path=acme*\nproject_id=20")
	f.Add("", "https://gitlab.com", "project_path=org/repo\nref=a\nRef=b")
	f.Add("github", "", "Repository=octo-org/octo-repo\nrepository_owner_id=65\nworkflow_file=release.yml")
	f.Add("", "https://token.actions.githubusercontent.com", "sub=environment:release")
	get := env(map[string]string{"HOME": "/h"})
	f.Fuzz(func(t *testing.T, provider, issuer, claims string) {
		if !utf8.ValidString(provider + issuer + claims) {
			return // TOML is UTF-8
		}
		var text strings.Builder
		text.WriteString(fzServers + "\n[exchange]\nlisten = \"127.0.0.1:8181\"\naudience = \"devpi.example.com\"\n[[exchange.publishers]]\nserver = \"local\"\nindexes = [\"team/release\"]\nany_project = true\n")
		if provider != "" {
			text.WriteString("provider = " + tomlString(provider) + "\n")
		}
		if issuer != "" {
			text.WriteString("issuer = " + tomlString(issuer) + "\n")
		}
		written := map[string]string{}
		var pairs []string
		for _, line := range strings.Split(claims, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			if _, twice := written[k]; twice {
				return // TOML refuses a key given twice
			}
			written[k] = v
			pairs = append(pairs, tomlString(k)+" = "+tomlString(v))
		}
		text.WriteString("claims = { " + strings.Join(pairs, ", ") + " }\n")
		c, err := Parse("c.toml", []byte(text.String()), get)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		fzCheckExchange(t, c)
		if c.Exchange == nil || len(c.Exchange.Publishers) != 1 {
			t.Fatalf("one publisher written, %+v loaded", c.Exchange)
		}
		got := c.Exchange.Publishers[0].Claims
		if fmt.Sprint(got) != fmt.Sprint(written) {
			t.Fatalf("claims %q written, %q loaded", written, got)
		}
	})
}

package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/devpi-credd/devpi-credd/token"
)

// Exchange is the trusted-publishing exchange: CI jobs trade an identity
// token of their CI system (OIDC) for a short-lived devpi token, with no
// stored secret (PyPI's interface: /_/oidc/audience, /_/oidc/mint-token).
type Exchange struct {
	// Listen is host:port of the exchange's own TCP listener, separate
	// from the local socket.
	Listen string
	// Audience identity tokens must be issued for.
	Audience string
	// MaxTTL bounds a minted token's life (default 15m, as PyPI's).
	MaxTTL time.Duration
	// TLSCert and TLSKey, when set, serve https; else plain http behind a
	// TLS proxy.
	TLSCert, TLSKey string
	// ReplayDir, when set, is where used identity tokens are remembered,
	// shared by replicas (a directory on a shared volume); else each
	// process remembers its own.
	ReplayDir string
	// TrustedProxies are the addresses of the proxies in front (such as
	// nginx routing /_/oidc/): requests from them are logged with the
	// caller's address from X-Forwarded-For. Empty: the peer's address.
	TrustedProxies []netip.Prefix
	// Publishers are the CI identities trusted, and what each may do.
	Publishers []Publisher
}

// Publisher is one trusted CI identity: tokens of Issuer whose claims all
// match Claims get a token of Server's long-lived one, limited by Limits.
type Publisher struct {
	Name   string
	Server string
	Issuer string
	// Provider is "github", "gitlab" or "": a preset of the claims that
	// must be named (what PyPI checks for that CI system).
	Provider string
	Limits   token.Limits
	// AnyProject says that Limits name no projects on purpose: the token
	// may upload any project of its indexes.
	AnyProject bool
	// Claims: each must equal the token's claim (see ClaimMatches); a
	// trailing * matches a prefix. "workflow_file" is the file name of
	// GitHub's job_workflow_ref when that workflow is in the token's
	// repository (PyPI's "workflow").
	Claims map[string]string
	// AllowEvents are the GitHub events refused by default that this
	// publisher takes (see refusedEvents).
	AllowEvents []string
	// Budget is exchanges a minute (0: no limit).
	Budget int
}

type fileExchange struct {
	Listen     string          `mapstructure:"listen"`
	Audience   string          `mapstructure:"audience"`
	MaxTTL     string          `mapstructure:"max_ttl"`
	TLSCert    string          `mapstructure:"tls_cert"`
	TLSKey     string          `mapstructure:"tls_key"`
	ReplayDir  string          `mapstructure:"replay_dir"`
	Proxies    []string        `mapstructure:"trusted_proxies"`
	Publishers []filePublisher `mapstructure:"publishers"`
}

type filePublisher struct {
	Name        string            `mapstructure:"name"`
	Server      string            `mapstructure:"server"`
	Issuer      string            `mapstructure:"issuer"`
	Provider    string            `mapstructure:"provider"`
	Indexes     []string          `mapstructure:"indexes"`
	Projects    []string          `mapstructure:"projects"`
	AnyProject  bool              `mapstructure:"any_project"`
	Allowed     []string          `mapstructure:"allowed"`
	Claims      map[string]string `mapstructure:"claims"`
	AllowEvents []string          `mapstructure:"allow_events"`
	Budget      *int              `mapstructure:"budget"`
}

// Issuers of the providers' presets, and the claims a publisher of each
// must name: PyPI matches GitHub publishers on the repository, its owner's
// id (a deleted and re-created owner of the same name gets another) and
// the workflow file; GitLab ones on the project path.
var (
	providerIssuers = map[string]string{
		ProviderGitHub: GitHubIssuer,
		ProviderGitLab: GitLabIssuer,
	}
	providerClaims = map[string][]string{
		ProviderGitHub: {"repository", "repository_owner_id", "workflow_file"},
		ProviderGitLab: {"project_path", "ci_config_file"},
	}
	// pinningClaims say whose job it is, one repository or project (or
	// group, by id): a publisher names one of them exactly, or an exact
	// sub (see pins), else a token of anyone's job could match its other
	// claims (an environment or workflow named "release" is anyone's).
	// Owner and group names are not enough: a name can be given up and
	// taken by someone else, an id cannot.
	pinningClaims = []string{"repository", "repository_id", "repository_owner_id", "project_path", "project_id", "namespace_id"}
	// exactClaims begin with, or are, an owner, repository, project or
	// workflow: a prefix of one matches others' ("repo:acme*" is also
	// the sub of acmecorp2/x, an owner anyone can create), so they take
	// exact values only.
	exactClaims = map[string]bool{
		"sub": true, "repository": true, "repository_owner": true, "repository_owner_id": true, "repository_id": true,
		"workflow_file": true, "job_workflow_ref": true, "workflow_ref": true,
		"project_path": true, "project_id": true, "namespace_path": true, "namespace_id": true,
		"job_project_path": true, "job_project_id": true, "job_namespace_path": true, "job_namespace_id": true,
		"ci_config_file": true, "ci_config_ref_uri": true,
	}
	// PyPIAudiences are PyPI's: an exchange that took them could be
	// handed tokens meant for PyPI (and a client that sent its identity
	// token to one could be handing it a token PyPI takes).
	PyPIAudiences = []string{"pypi", "testpypi"}
)

// DefaultExchangeBudget is a publisher's exchanges a minute when the config
// says nothing: a release job needs one, a matrix a few.
const DefaultExchangeBudget = 60

func validateExchange(fe *fileExchange, servers []Server) (*Exchange, error) {
	if fe == nil {
		return nil, nil
	}
	e := &Exchange{Listen: fe.Listen, Audience: fe.Audience, TLSCert: fe.TLSCert, TLSKey: fe.TLSKey, ReplayDir: fe.ReplayDir}
	if _, _, err := net.SplitHostPort(e.Listen); err != nil {
		return nil, fmt.Errorf("exchange.listen = %q: host:port, such as \"127.0.0.1:8181\"", e.Listen)
	}
	if strings.TrimSpace(e.Audience) == "" {
		return nil, errors.New("exchange.audience is missing: the audience identity tokens are issued for, such as \"devpi.example.com\"")
	}
	if slices.Contains(PyPIAudiences, strings.ToLower(e.Audience)) {
		return nil, fmt.Errorf("exchange.audience = %q is PyPI's: choose one of this exchange's own, such as its host name", e.Audience)
	}
	ttl := fe.MaxTTL
	if ttl == "" {
		ttl = "15m"
	}
	var err error
	if e.MaxTTL, err = positive("exchange.max_ttl", ttl); err != nil {
		return nil, err
	}
	if (e.TLSCert == "") != (e.TLSKey == "") {
		return nil, errors.New("exchange: give tls_cert and tls_key together, or neither")
	}
	for _, p := range []string{e.TLSCert, e.TLSKey, e.ReplayDir} {
		if p != "" && !filepath.IsAbs(p) {
			return nil, fmt.Errorf("exchange: path %q must be absolute", p)
		}
	}
	if e.TrustedProxies, err = parseProxies(fe.Proxies); err != nil {
		return nil, err
	}
	if len(fe.Publishers) == 0 {
		return nil, errors.New("exchange: no [[exchange.publishers]]: nobody could exchange")
	}
	names := map[string]bool{}
	for i, fp := range fe.Publishers {
		p, err := validatePublisher(i, fp, servers)
		if err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, fmt.Errorf("exchange.publishers: the name %q is given twice", p.Name)
		}
		names[p.Name] = true
		e.Publishers = append(e.Publishers, p)
	}
	if err := checkOverlaps(e.Publishers); err != nil {
		return nil, err
	}
	return e, nil
}

func validatePublisher(i int, fp filePublisher, servers []Server) (Publisher, error) {
	p := Publisher{Name: fp.Name, Server: fp.Server, Issuer: fp.Issuer, Provider: fp.Provider, Claims: map[string]string{}, Budget: DefaultExchangeBudget}
	if p.Name == "" {
		p.Name = fmt.Sprintf("publisher-%d", i+1)
	}
	where := "exchange.publishers " + p.Name
	if fp.Budget != nil {
		if *fp.Budget < 0 {
			return p, fmt.Errorf("%s: budget = %d: exchanges a minute, 0 for no limit", where, *fp.Budget)
		}
		p.Budget = *fp.Budget
	}
	if !hasServer(servers, p.Server) {
		return p, fmt.Errorf("%s: server %q is not a [servers.NAME] of this config", where, p.Server)
	}
	if p.Provider != "" {
		iss, ok := providerIssuers[p.Provider]
		if !ok {
			return p, fmt.Errorf("%s: provider %q: use \"github\" or \"gitlab\" (or leave it out and name the claims)", where, p.Provider)
		}
		if p.Issuer == "" {
			p.Issuer = iss
		}
	}
	if u, err := url.Parse(p.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return p, fmt.Errorf("%s: issuer %q is not an https URL", where, p.Issuer)
	}
	if len(fp.AllowEvents) > 0 && p.kind() != ProviderGitHub {
		return p, fmt.Errorf("%s: allow_events is for GitHub's events: give provider = \"github\" or GitHub's issuer, or leave it out", where)
	}
	for _, ev := range fp.AllowEvents {
		if !slices.Contains(refusedEvents, ev) {
			return p, fmt.Errorf("%s: allow_events: %q is not refused to begin with; it takes %s", where, ev, strings.Join(refusedEvents, " and "))
		}
		if !slices.Contains(p.AllowEvents, ev) {
			p.AllowEvents = append(p.AllowEvents, ev)
		}
	}
	allowed := fp.Allowed
	if allowed == nil {
		allowed = []string{"upload"}
	}
	var err error
	if p.Limits, err = token.ParseLimits(allowed, fp.Indexes, fp.Projects); err != nil {
		return p, fmt.Errorf("%s: %w", where, err)
	}
	p.AnyProject = fp.AnyProject
	switch {
	case p.Limits.Indexes == nil && p.Limits.Projects == nil:
		return p, fmt.Errorf("%s: name indexes or projects: a publisher limited to nothing could upload anywhere its server's token can", where)
	case p.AnyProject && p.Limits.Projects != nil:
		return p, fmt.Errorf("%s: projects and any_project = true contradict each other: keep one", where)
	case !p.AnyProject && p.Limits.Projects == nil:
		return p, fmt.Errorf("%s: name its projects, or say any_project = true to let it upload any project to its indexes", where)
	}
	// In the order of their names: a config with two bad claims is
	// refused with the same error every time.
	for _, k := range slices.Sorted(maps.Keys(fp.Claims)) {
		v := fp.Claims[k]
		switch {
		case strings.TrimSpace(strings.TrimSuffix(v, "*")) == "":
			return p, fmt.Errorf("%s: claims.%s = %q matches anything: name the value", where, k, v)
		case strings.HasSuffix(v, "*") && exactClaims[k]:
			return p, fmt.Errorf("%s: claims.%s = %q: a prefix of %s matches others' too; give the exact value", where, k, v, k)
		}
		p.Claims[k] = v
	}
	if len(p.Claims) == 0 {
		return p, fmt.Errorf("%s: no claims: any identity token of %s would do", where, p.Issuer)
	}
	if !p.pins() {
		return p, fmt.Errorf("%s: no claim says whose job it is: name exactly one of %s, or the exact sub", where, strings.Join(pinningClaims, ", "))
	}
	for _, need := range providerClaims[p.Provider] {
		if _, ok := p.Claims[need]; !ok {
			return p, fmt.Errorf("%s: a %s publisher names claims.%s (what PyPI checks too)", where, p.Provider, need)
		}
	}
	return p, nil
}

// checkRawClaims refuses the claims of [[exchange.publishers]] that viper
// would not keep as written (data is the config file, which viper has
// read): it lower-cases every key, so "Ref" would become "ref" and one of
// "ref" and "Ref" would be dropped, and it turns any value into a string,
// so ref_protected = true would become "1", which no token's "true"
// equals. Only the claims tables: elsewhere the keys are ours, and a
// value of the wrong type is refused or means the same.
func checkRawClaims(data []byte) error {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil // viper has read it; what it says of it stands
	}
	for i, pub := range rawTables(rawKey(doc, "exchange"), "publishers") {
		p, ok := pub.(map[string]any)
		if !ok {
			continue // mapstructure refuses it
		}
		name, _ := rawKey(p, "name").(string)
		if name == "" {
			name = fmt.Sprintf("publisher-%d", i+1)
		}
		claims, _ := rawKey(p, "claims").(map[string]any)
		if err := checkClaimsAsWritten(claims); err != nil {
			return fmt.Errorf("exchange.publishers %s: %w", name, err)
		}
	}
	return nil
}

func checkClaimsAsWritten(claims map[string]any) error {
	names := slices.Sorted(maps.Keys(claims))
	folded := map[string]string{}
	for _, k := range names {
		if other, twice := folded[strings.ToLower(k)]; twice {
			return fmt.Errorf("claims.%s and claims.%s differ only by case: a token has one of them, lower-case; keep that one", other, k)
		}
		folded[strings.ToLower(k)] = k
	}
	for _, k := range names {
		if k != strings.ToLower(k) {
			return fmt.Errorf("claims.%s: claim names are lower-case (GitHub's and GitLab's are lower-case snake_case): write claims.%s", k, strings.ToLower(k))
		}
	}
	for _, k := range names {
		switch v := claims[k].(type) {
		case string:
		case bool, int64, float64:
			return fmt.Errorf("claims.%s = %v is not a string: quote it, %s = \"%v\"", k, v, k, v)
		default:
			return fmt.Errorf("claims.%s is not a string: a claim's value is a string, such as %s = \"...\"", k, k)
		}
	}
	return nil
}

// rawKey is m's value of key as viper finds it: keys in any case (viper
// lower-cases them). nil if m is not a table or has no such key.
func rawKey(m any, key string) any {
	t, _ := m.(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if strings.ToLower(k) == key {
			return t[k]
		}
	}
	return nil
}

// rawTables is m's array of tables under key.
func rawTables(m any, key string) []any {
	list, _ := rawKey(m, key).([]any)
	return list
}

// pins reports whether p names whose job it is (see pinningClaims). The
// prefixes of those claims are refused before. A GitHub sub counts when it
// begins with the repository ("repo:OWNER/REPO..."): an owner may make
// its tokens' sub of other claims alone ("environment:release"), which
// anyone's could then equal.
func (p Publisher) pins() bool {
	for _, k := range pinningClaims {
		if _, ok := p.Claims[k]; ok {
			return true
		}
	}
	sub, ok := p.Claims["sub"]
	return ok && (p.kind() != ProviderGitHub || strings.HasPrefix(sub, "repo:"))
}

// parseProxies reads trusted_proxies: addresses ("127.0.0.1", "::1") and
// CIDR ranges ("10.0.0.0/8"). A range with host bits ("192.168.1.7/16", a
// typo for one host?), /0 and ranges shorter than a network's (anyone
// could name any address) and IPv6 link-local ones are refused;
// IPv4-mapped IPv6 forms are read as IPv4, as peers are.
func parseProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		bad := func(why string) error {
			return fmt.Errorf("exchange.trusted_proxies: %q %s", s, why)
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, bad(`is not an IP address or CIDR range, such as "127.0.0.1" or "10.0.0.0/8"`)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p != p.Masked() {
			return nil, bad(fmt.Sprintf("has bits set past /%d: write %q, or the one address", p.Bits(), p.Masked()))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		switch {
		case p.Bits() == 0:
			return nil, bad("trusts every address: anyone could name any address; name the proxies")
		case p.Bits() < minProxyBits(p.Addr()):
			return nil, bad(fmt.Sprintf("trusts too many addresses (shorter than /%d): name the proxies", minProxyBits(p.Addr())))
		case p.Addr().Is6() && p.Addr().IsLinkLocalUnicast():
			return nil, bad("is link-local: such peers carry a zone and are never matched; give the proxy's loopback or routable address")
		}
		out = append(out, p)
	}
	return out, nil
}

// minProxyBits: a range of proxies is a network's, not a continent's.
func minProxyBits(a netip.Addr) int {
	if a.Is4() {
		return 8
	}
	return 32
}

func hasServer(servers []Server, name string) bool {
	for _, s := range servers {
		if s.Name == name {
			return true
		}
	}
	return false
}

// ClaimNames are a publisher's claims, sorted, for messages.
func (p Publisher) ClaimNames() []string {
	var out []string
	for k := range p.Claims {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

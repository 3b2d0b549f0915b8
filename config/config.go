// Package config reads devpi-credd's TOML configuration: the daemon's
// socket, token lifetimes, audit log and the servers it holds tokens for.
// Every load uses a fresh viper instance and validates the result, so a bad
// edit can be refused while the previous configuration keeps serving.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/internal/clientcfg"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/internal/xdg"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// Defaults for what the file leaves out.
const (
	DefaultTTL = 5 * time.Minute
	MaxTTL     = time.Hour
	// SessionTTL bounds session tokens, which devpi-client holds for a
	// working day as its own login does (10 hours).
	SessionTTL = 10 * time.Hour
)

// Config is a validated configuration.
type Config struct {
	Path       string
	Socket     string
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	// MaxSessionTTL bounds session tokens (devpi-login).
	MaxSessionTTL time.Duration
	AuditLog      string
	// AllowUIDs may use the daemon besides its own user and root: for
	// scoped tokens only, unless AllowGrant grants them more. They connect
	// to SharedSocket; Socket stays private to the owner, so that nobody
	// else can even reach it (a flood of connections fills the backlog of
	// the socket it reaches, whatever the daemon does after accepting).
	AllowUIDs    []int
	SharedSocket string
	// AllowGrant lists the owner's powers that AllowUIDs get too:
	// GrantSession (session tokens, which carry only an expiry),
	// GrantLock (lock and unlock) and GrantApproval.
	AllowGrant []string
	// MintBudget bounds the tokens one caller (uid, executable and parent
	// executable) may get a minute; 0 is no limit.
	MintBudget int
	// Servers, sorted by name.
	Servers []Server
	// Exchange, when set, serves trusted publishing (see Exchange).
	Exchange *Exchange
}

// Powers that allow_uids_grant may name.
const (
	GrantSession = "session"
	GrantLock    = "lock"
	// GrantApproval lets allow_uids enrol an authenticator and turn
	// approval off (both with codes): the person a system-mode daemon
	// serves.
	GrantApproval = "approval"
)

// Grants reports whether the config grants power to the allow_uids.
func (c *Config) Grants(power string) bool {
	for _, g := range c.AllowGrant {
		if g == power {
			return true
		}
	}
	return false
}

// Server is one devpi-server and where its long-lived token lives.
type Server struct {
	Name      string
	URL       *url.URL // root, with a trailing slash
	TokenFile string
	Keychain  bool
	// Limits are added to every token minted for this server.
	Limits token.Limits
	// DevpiClient keeps devpi-client's auth.json fresh for this server
	// (see devpi-login).
	DevpiClient bool
	// ReadScope is "index" (read tokens name the index and its bases) or
	// "server" (read tokens read every index): pip keeps one credential per
	// host, so several indexes of one server in one pip run need "server".
	ReadScope string
}

// Server returns the server called name.
func (c *Config) Server(name string) (*Server, bool) {
	for i := range c.Servers {
		if c.Servers[i].Name == name {
			return &c.Servers[i], true
		}
	}
	return nil, false
}

// Match returns the server whose URL is the longest prefix of u (see
// safeurl.Match: decoded paths; a bare host matches only plain http).
func (c *Config) Match(u *url.URL) (*Server, bool) {
	roots := make([]*url.URL, len(c.Servers))
	for i := range c.Servers {
		roots[i] = c.Servers[i].URL
	}
	i, ok := safeurl.Match(roots, u)
	if !ok {
		return nil, false
	}
	return &c.Servers[i], true
}

// Backend is where this server's long-lived token lives.
func (s Server) Backend() store.Backend {
	if s.Keychain {
		return store.Keychain{Name: s.Name}
	}
	return store.File{Path: s.TokenFile}
}

type fileServer struct {
	URL         string   `mapstructure:"url"`
	TokenFile   string   `mapstructure:"token_file"`
	Keychain    bool     `mapstructure:"keychain"`
	Indexes     []string `mapstructure:"indexes"`
	Projects    []string `mapstructure:"projects"`
	Allowed     []string `mapstructure:"allowed"`
	DevpiClient bool     `mapstructure:"devpi_client"`
	ReadScope   string   `mapstructure:"read_scope"`
}

type fileConfig struct {
	Socket     string                `mapstructure:"socket"`
	DefaultTTL string                `mapstructure:"default_ttl"`
	MaxTTL     string                `mapstructure:"max_ttl"`
	MaxSession string                `mapstructure:"max_session_ttl"`
	AuditLog   string                `mapstructure:"audit_log"`
	AllowUIDs  []int                 `mapstructure:"allow_uids"`
	Shared     string                `mapstructure:"shared_socket"`
	AllowGrant []string              `mapstructure:"allow_uids_grant"`
	MintBudget int                   `mapstructure:"mint_budget"`
	Servers    map[string]fileServer `mapstructure:"servers"`
	Exchange   *fileExchange         `mapstructure:"exchange"`
}

// ErrEmpty is returned for an empty file, which is what a reader sees in the
// middle of a truncate-then-write save.
var ErrEmpty = errors.New("config file is empty")

// Load reads and validates the file at path. Environment variables
// DEVPI_CREDD_SOCKET, _DEFAULT_TTL, _MAX_TTL and _AUDIT_LOG override the
// file. A missing file is a *MissingError (which wraps fs.ErrNotExist).
func Load(path string, getenv func(string) string) (*Config, error) {
	data, _, err := safefile.Read(path, MaxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &MissingError{Path: path, Err: err}
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, data, getenv)
}

// MissingError is Load's error when there is no config file at Path. It
// wraps the system's error (fs.ErrNotExist).
type MissingError struct {
	Path string
	Err  error
}

func (e *MissingError) Error() string { return e.Err.Error() }
func (e *MissingError) Unwrap() error { return e.Err }

// MaxSize bounds a config file (the clients' reader's bound).
const MaxSize = clientcfg.MaxSize

// Parse is Load on bytes already read.
func Parse(path string, data []byte, getenv func(string) string) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	// "::" because server names are keys and viper splits keys at dots.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType("toml")
	v.SetDefault("socket", "")
	v.SetDefault("default_ttl", DefaultTTL.String())
	v.SetDefault("max_ttl", MaxTTL.String())
	v.SetDefault("max_session_ttl", SessionTTL.String())
	v.SetDefault("audit_log", "")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: %s", path, msg.OneLine(err.Error()))
	}
	if err := checkRawClaims(data); err != nil {
		return nil, fmt.Errorf("%s: %s", path, msg.OneLine(err.Error()))
	}
	// Environment overrides go through getenv, not viper's AutomaticEnv, so
	// that the daemon and tests control what is read.
	for _, k := range []string{"socket", "default_ttl", "max_ttl", "audit_log"} {
		if val := getenv("DEVPI_CREDD_" + strings.ToUpper(k)); val != "" {
			v.Set(k, val)
		}
	}
	var fc fileConfig
	if err := v.UnmarshalExact(&fc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, msg.OneLine(err.Error()))
	}
	c, err := validate(fc, getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

func validate(fc fileConfig, getenv func(string) string) (*Config, error) {
	c := &Config{Socket: fc.Socket, AuditLog: fc.AuditLog, AllowUIDs: fc.AllowUIDs, SharedSocket: fc.Shared, MintBudget: fc.MintBudget}
	if c.MintBudget < 0 {
		return nil, fmt.Errorf("mint_budget = %d: tokens a minute per caller, 0 for no limit", c.MintBudget)
	}
	var err error
	if c.DefaultTTL, err = positive("default_ttl", fc.DefaultTTL); err != nil {
		return nil, err
	}
	if c.MaxTTL, err = positive("max_ttl", fc.MaxTTL); err != nil {
		return nil, err
	}
	if c.MaxSessionTTL, err = positive("max_session_ttl", fc.MaxSession); err != nil {
		return nil, err
	}
	if c.DefaultTTL > c.MaxTTL {
		return nil, fmt.Errorf("default_ttl %s is longer than max_ttl %s", c.DefaultTTL, c.MaxTTL)
	}
	if c.Socket == "" {
		c.Socket = xdg.Socket(getenv)
	}
	if c.AuditLog == "" {
		c.AuditLog = filepath.Join(xdg.StateDir(getenv), "audit.log")
	}
	for _, p := range []string{c.Socket, c.AuditLog} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("path %q must be absolute", p)
		}
	}
	for _, uid := range c.AllowUIDs {
		if uid < 0 {
			return nil, fmt.Errorf("allow_uids: %d is not a uid", uid)
		}
	}
	switch {
	case len(c.AllowUIDs) > 0 && c.SharedSocket == "":
		return nil, errors.New("allow_uids needs shared_socket: the socket the other uids connect to, in a directory they can reach (your own socket stays private)")
	case c.SharedSocket != "" && !filepath.IsAbs(c.SharedSocket):
		return nil, fmt.Errorf("shared_socket %q must be absolute", c.SharedSocket)
	case c.SharedSocket != "" && filepath.Dir(c.SharedSocket) == filepath.Dir(c.Socket):
		return nil, fmt.Errorf("shared_socket %q must be in another directory than socket %q (that one is private)", c.SharedSocket, c.Socket)
	}
	for _, g := range fc.AllowGrant {
		if g != GrantSession && g != GrantLock && g != GrantApproval {
			return nil, fmt.Errorf("allow_uids_grant: %q is not %q, %q or %q", g, GrantSession, GrantLock, GrantApproval)
		}
		if !c.Grants(g) {
			c.AllowGrant = append(c.AllowGrant, g)
		}
	}
	seen := map[string]string{}
	// In the order of their names, as the claims: the same bad config
	// gets the same error every time.
	for _, name := range slices.Sorted(maps.Keys(fc.Servers)) {
		fs := fc.Servers[name]
		s, err := validateServer(name, fs, getenv)
		if err != nil {
			return nil, fmt.Errorf("servers.%s: %w", name, err)
		}
		if other, dup := seen[s.URL.String()]; dup {
			return nil, fmt.Errorf("servers.%s and servers.%s have the same url", other, name)
		}
		seen[s.URL.String()] = name
		c.Servers = append(c.Servers, s)
	}
	sort.Slice(c.Servers, func(i, j int) bool { return c.Servers[i].Name < c.Servers[j].Name })
	if c.Exchange, err = validateExchange(fc.Exchange, c.Servers); err != nil {
		return nil, err
	}
	return c, nil
}

func positive(key, s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s = %q is not a positive duration such as \"5m\"", key, s)
	}
	return d, nil
}

func validateServer(name string, fs fileServer, getenv func(string) string) (Server, error) {
	if !store.ValidName(name) {
		return Server{}, fmt.Errorf("name: use lower-case letters, digits, '_' and '-'")
	}
	if fs.URL == "" {
		return Server{}, errors.New("url is missing")
	}
	u, err := devpi.ParseRoot(fs.URL)
	if err != nil {
		return Server{}, err
	}
	s := Server{Name: name, URL: u, TokenFile: fs.TokenFile, Keychain: fs.Keychain, DevpiClient: fs.DevpiClient, ReadScope: fs.ReadScope}
	switch s.ReadScope {
	case "":
		s.ReadScope = "index"
	case "index", "server":
	default:
		return Server{}, fmt.Errorf("read_scope = %q: use \"index\" or \"server\"", fs.ReadScope)
	}
	switch {
	case s.Keychain && s.TokenFile != "":
		return Server{}, errors.New("token_file and keychain = true exclude each other")
	case !s.Keychain && s.TokenFile == "":
		s.TokenFile = store.TokenPath(xdg.StateDir(getenv), name)
	case s.TokenFile != "" && !filepath.IsAbs(s.TokenFile):
		return Server{}, fmt.Errorf("token_file %q must be absolute", s.TokenFile)
	}
	if s.Limits, err = token.ParseLimits(fs.Allowed, fs.Indexes, fs.Projects); err != nil {
		return Server{}, err
	}
	return s, nil
}

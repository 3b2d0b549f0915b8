package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/token"
)

func (a *app) newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the daemon's config",
		Args:  args(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newConfigCheckCmd())
	return cmd
}

type configCheckOptions struct {
	config string
	asJSON bool
}

func (a *app) newConfigCheckCmd() *cobra.Command {
	var o configCheckOptions
	cmd := &cobra.Command{
		Use:   "check [--config FILE] [--json]",
		Short: "Load the config as serve would, make its checks, and say what it would serve",
		Long: `Load the config as 'serve' does, with every check serve makes before it
listens: the config itself, and the exchange's listen address, its
tls_cert and tls_key (the key private to this user, as token files are)
and its replay_dir. Nothing is started or made, and no socket is opened
(a replay_dir that does not exist yet is a note: serve makes it). It prints
the servers, the local socket and the exchange, with each publisher's
scope, and exits 0; or it prints the reason on one line and exits 2, the
same error 'serve' refuses to start with (as 'nginx -t' does).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runConfigCheck(o) },
	}
	configFlag(cmd, &o.config)
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}

// checkedConfig is what config check prints.
type checkedConfig struct {
	Config       string           `json:"config"`
	Socket       string           `json:"socket"`
	SharedSocket string           `json:"shared_socket,omitempty"`
	AllowUIDs    []int            `json:"allow_uids,omitempty"`
	AuditLog     string           `json:"audit_log"`
	Servers      []checkedServer  `json:"servers"`
	Exchange     *checkedExchange `json:"exchange,omitempty"`
	Notes        []string         `json:"notes,omitempty"`
}

type checkedServer struct {
	Name   string       `json:"name"`
	URL    string       `json:"url"`
	Token  string       `json:"token"`
	Limits token.Limits `json:"limits"`
}

type checkedExchange struct {
	Listen     string             `json:"listen"`
	TLS        bool               `json:"tls"`
	Audience   string             `json:"audience"`
	MaxTTL     string             `json:"max_ttl"`
	ReplayDir  string             `json:"replay_dir,omitempty"`
	Proxies    []string           `json:"trusted_proxies,omitempty"`
	Publishers []checkedPublisher `json:"publishers"`
}

type checkedPublisher struct {
	Name        string            `json:"name"`
	Server      string            `json:"server"`
	Issuer      string            `json:"issuer"`
	Provider    string            `json:"provider,omitempty"`
	Claims      map[string]string `json:"claims"`
	AllowEvents []string          `json:"allow_events,omitempty"`
	Limits      token.Limits      `json:"limits"`
	AnyProject  bool              `json:"any_project"`
	Budget      int               `json:"budget"`
}

// loadChecked loads the config at path and makes serve's start checks:
// config.Load and daemon.Check, what daemon.New runs, with serve's errors.
// notes are what serve would do that is worth saying (make replay_dir).
func (a *app) loadChecked(path string) (cfg *config.Config, notes []string, err error) {
	cfg, err = config.Load(path, a.getenv)
	if err == nil {
		notes, err = daemon.Check(cfg)
	}
	if err != nil {
		return nil, nil, startError(path, err)
	}
	return cfg, notes, nil
}

// startError is the error of a config that serve cannot start with (and
// config check refuses): usage, exit 2.
func startError(path string, err error) error {
	var missing *config.MissingError
	if errors.As(err, &missing) {
		return usageErrorf("no config at %s: 'devpi-credd token login' adds a server to it, or write one (see 'devpi-credd serve --help')", path)
	}
	return &exitError{exitUsage, err}
}

func (a *app) runConfigCheck(o configCheckOptions) error {
	cfg, notes, err := a.loadChecked(a.configPath(o.config))
	if err != nil {
		return err
	}
	out := describeConfig(cfg)
	out.Notes = notes
	if o.asJSON {
		return printJSON(a, out)
	}
	return printChecked(a.stdout, out)
}

func describeConfig(cfg *config.Config) checkedConfig {
	out := checkedConfig{Config: cfg.Path, Socket: cfg.Socket, SharedSocket: cfg.SharedSocket, AllowUIDs: cfg.AllowUIDs, AuditLog: cfg.AuditLog, Servers: []checkedServer{}}
	for _, s := range cfg.Servers {
		where := "file " + s.TokenFile
		if s.Keychain {
			where = "keychain"
		}
		out.Servers = append(out.Servers, checkedServer{Name: s.Name, URL: s.URL.String(), Token: where, Limits: s.Limits})
	}
	if e := cfg.Exchange; e != nil {
		x := &checkedExchange{Listen: e.Listen, TLS: e.TLSCert != "", Audience: e.Audience, MaxTTL: e.MaxTTL.String(), ReplayDir: e.ReplayDir, Publishers: []checkedPublisher{}}
		for _, p := range e.TrustedProxies {
			x.Proxies = append(x.Proxies, p.String())
		}
		for _, p := range e.Publishers {
			x.Publishers = append(x.Publishers, checkedPublisher{Name: p.Name, Server: p.Server, Issuer: p.Issuer, Provider: p.Provider,
				Claims: p.Claims, AllowEvents: p.AllowEvents, Limits: p.Limits, AnyProject: p.AnyProject, Budget: p.Budget})
		}
		out.Exchange = x
	}
	return out
}

func printChecked(w io.Writer, c checkedConfig) error {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: ok\n", c.Config)
	fmt.Fprintf(&b, "socket %s\n", c.Socket)
	if c.SharedSocket != "" {
		fmt.Fprintf(&b, "shared_socket %s (allow_uids %s)\n", c.SharedSocket, strings.Trim(fmt.Sprint(c.AllowUIDs), "[]"))
	}
	fmt.Fprintf(&b, "audit_log %s\n", c.AuditLog)
	if len(c.Servers) == 0 {
		b.WriteString("no servers: 'devpi-credd token login' adds one\n")
	}
	for _, s := range c.Servers {
		fmt.Fprintf(&b, "server %s %s, token in %s%s\n", s.Name, s.URL, s.Token, limitsText(s.Limits, false))
	}
	if x := c.Exchange; x != nil {
		scheme := "http"
		if x.TLS {
			scheme = "https"
		}
		fmt.Fprintf(&b, "exchange %s://%s, audience %q, tokens for at most %s", scheme, x.Listen, x.Audience, x.MaxTTL)
		if x.ReplayDir != "" {
			fmt.Fprintf(&b, ", replay_dir %s", x.ReplayDir)
		}
		if len(x.Proxies) > 0 {
			fmt.Fprintf(&b, ", trusted_proxies %s", strings.Join(x.Proxies, " "))
		}
		b.WriteString("\n")
		for _, p := range x.Publishers {
			var claims []string
			for k, v := range p.Claims {
				claims = append(claims, fmt.Sprintf("%s=%q", k, v))
			}
			sort.Strings(claims)
			fmt.Fprintf(&b, "publisher %s: issuer %s", p.Name, p.Issuer)
			if p.Provider != "" {
				fmt.Fprintf(&b, " (%s)", p.Provider)
			}
			fmt.Fprintf(&b, ", claims %s", strings.Join(claims, " "))
			if len(p.AllowEvents) > 0 {
				fmt.Fprintf(&b, ", allow_events %s", strings.Join(p.AllowEvents, ","))
			}
			budget := "no budget"
			if p.Budget > 0 {
				budget = fmt.Sprintf("%d a minute", p.Budget)
			}
			fmt.Fprintf(&b, "; server %s%s, %s\n", p.Server, limitsText(p.Limits, p.AnyProject), budget)
		}
	}
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// limitsText is ", allowed ..., indexes ..., projects ..." for what l
// names; anyProject says "any project" where projects are not named.
func limitsText(l token.Limits, anyProject bool) string {
	var parts []string
	for _, f := range []struct {
		key  string
		list []string
	}{{token.KeyAllowed, l.Allowed}, {token.KeyIndexes, l.Indexes}, {token.KeyProjects, l.Projects}} {
		if f.list != nil {
			parts = append(parts, f.key+" "+strings.Join(f.list, ","))
		}
	}
	if anyProject {
		parts = append(parts, "any project")
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

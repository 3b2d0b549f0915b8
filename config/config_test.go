package config

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const full = `
socket = "/run/x/socket"
default_ttl = "2m"
max_ttl = "30m"
audit_log = "/var/log/credd.jsonl"
allow_uids = [1001]
shared_socket = "/run/shared/socket"
allow_uids_grant = ["lock", "lock"]

[servers.local]
url = "http://127.0.0.1:3141"
indexes = ["alice/dev", " alice/prod,alice/dev"]
projects = ["foo"]
allowed = ["pkg_read", "upload"]

[servers.sub-path]
url = "http://127.0.0.1:3141/devpi/"
keychain = true

[servers."other.host"]
url = "https://devpi.example/"
token_file = "/secrets/devpi/token"
`

func TestParseFull(t *testing.T) {
	c, err := Parse("c.toml", []byte(full), env(map[string]string{"HOME": "/home/u"}))
	if err == nil {
		t.Fatalf("a server name with a dot was accepted: %+v", c.Servers)
	}
	if !strings.Contains(err.Error(), "servers.other.host") && !strings.Contains(err.Error(), "other.host") {
		t.Errorf("error does not name the server: %v", err)
	}
	fixed := strings.Replace(full, `"other.host"`, "other-host", 1)
	c, err = Parse("c.toml", []byte(fixed), env(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/run/x/socket" || c.DefaultTTL != 2*time.Minute || c.MaxTTL != 30*time.Minute ||
		c.AuditLog != "/var/log/credd.jsonl" || !slices.Equal(c.AllowUIDs, []int{1001}) ||
		c.SharedSocket != "/run/shared/socket" || !slices.Equal(c.AllowGrant, []string{"lock"}) || c.Grants(GrantSession) {
		t.Errorf("top level = %+v", c)
	}
	if len(c.Servers) != 3 || c.Servers[0].Name != "local" || c.Servers[1].Name != "other-host" {
		t.Fatalf("servers = %+v", c.Servers)
	}
	local := c.Servers[0]
	if local.URL.String() != "http://127.0.0.1:3141/" || !slices.Equal(local.Limits.Indexes, []string{"alice/dev", "alice/prod"}) ||
		local.TokenFile != "/home/u/.local/state/devpi-credd/tokens/local.token" {
		t.Errorf("local = %+v", local)
	}
	if s, _ := c.Server("sub-path"); !s.Keychain || s.TokenFile != "" {
		t.Errorf("sub-path = %+v", s)
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:3141/alice/dev/+simple/": "local",
		"http://127.0.0.1:3141":                    "local",
		"http://127.0.0.1:3141/devpi/alice/dev/":   "sub-path",
		"http://127.0.0.1:3141/devpi":              "sub-path",
		"http://127.0.0.1:3141/devpix/":            "local",
		"https://devpi.example/x/y/":               "other-host",
		"https://DEVPI.example/":                   "other-host",
		"http://devpi.example/":                    "",
		"http://127.0.0.1:3142/":                   "",
	} {
		u, _ := url.Parse(in)
		s, ok := c.Match(u)
		got := ""
		if ok {
			got = s.Name
		}
		if got != want {
			t.Errorf("Match(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultsAndEnv(t *testing.T) {
	e := map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/7", "DEVPI_CREDD_MAX_TTL": "2h"}
	c, err := Parse("c.toml", []byte("[servers.a]\nurl = \"http://h/\"\n"), env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/run/user/7/devpi-credd/socket" || c.DefaultTTL != DefaultTTL || c.MaxTTL != 2*time.Hour ||
		c.AuditLog != "/home/u/.local/state/devpi-credd/audit.log" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestRejects(t *testing.T) {
	for name, text := range map[string]string{
		"empty":              "  \n",
		"syntax":             "[servers.a\nurl = 1",
		"unknown key":        "sokcet = \"/x\"",
		"unknown server key": "[servers.a]\nurl = \"http://h/\"\nindex = [\"a/b\"]",
		"bad ttl":            "default_ttl = \"soon\"",
		"zero ttl":           "max_ttl = \"0s\"",
		"default > max":      "default_ttl = \"2h\"\nmax_ttl = \"1h\"",
		"relative socket":    "socket = \"run/s\"",
		"no url":             "[servers.a]\nindexes = [\"a/b\"]",
		"bad url":            "[servers.a]\nurl = \"ftp://h/\"",
		"bad name":           "[servers.\"a b\"]\nurl = \"http://h/\"",
		"both stores":        "[servers.a]\nurl = \"http://h/\"\nkeychain = true\ntoken_file = \"/t\"",
		"relative token":     "[servers.a]\nurl = \"http://h/\"\ntoken_file = \"t\"",
		"bad index":          "[servers.a]\nurl = \"http://h/\"\nindexes = [\"dev\"]",
		"empty projects":     "[servers.a]\nurl = \"http://h/\"\nprojects = []",
		"same url":           "[servers.a]\nurl = \"http://h/\"\n[servers.b]\nurl = \"http://h\"",
		"negative uid":       "allow_uids = [-1]",
		"no shared socket":   "allow_uids = [1001]",
		"shared beside own":  "socket = \"/run/x/s\"\nallow_uids = [1001]\nshared_socket = \"/run/x/shared\"",
		"relative shared":    "allow_uids = [1001]\nshared_socket = \"s\"",
		"unknown grant":      "allow_uids = [1001]\nshared_socket = \"/s/s\"\nallow_uids_grant = [\"everything\"]",
	} {
		_, err := Parse("c.toml", []byte(text), env(map[string]string{"HOME": "/h"}))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "c.toml: ") {
			t.Errorf("%s: error %q is not one line naming the file", name, err)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), env(nil)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Parse("c.toml", nil, env(nil)); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
}

func TestEnsureServer(t *testing.T) {
	get := env(map[string]string{"HOME": "/h"})
	path := filepath.Join(t.TempDir(), "sub", "config.toml")
	u, _ := url.Parse("http://127.0.0.1:3141/")
	name, added, err := EnsureServer(path, "local", u, false, get)
	if err != nil || !added || name != "local" {
		t.Fatalf("first = %q %v %v", name, added, err)
	}
	name, added, err = EnsureServer(path, "other-name", u, false, get)
	if err != nil || added || name != "local" {
		t.Errorf("same url again = %q %v %v", name, added, err)
	}
	u2, _ := url.Parse("http://127.0.0.1:4000/")
	if _, _, err := EnsureServer(path, "local", u2, false, get); err == nil {
		t.Error("a taken name with another url was accepted")
	}
	// Comments survive an append.
	data, _ := os.ReadFile(path)
	data = append(data, []byte("# my note\n")...)
	_ = os.WriteFile(path, data, 0o600)
	if _, added, err := EnsureServer(path, "second", u2, true, get); err != nil || !added {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), "# my note") {
		t.Errorf("comment lost:\n%s", data)
	}
	c, err := Load(path, get)
	if err != nil || len(c.Servers) != 2 {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if s, _ := c.Server("second"); !s.Keychain || s.Backend().String() != "keychain:devpi-credd/second" {
		t.Errorf("second = %+v", s)
	}
	if s, _ := c.Server("local"); s.Backend().String() != "/h/.local/state/devpi-credd/tokens/local.token" {
		t.Errorf("local backend = %s", s.Backend())
	}
	_ = os.WriteFile(path, []byte("broken = ["), 0o600)
	if _, _, err := EnsureServer(path, "x", u, false, get); err == nil || !strings.Contains(err.Error(), "fix the config first") {
		t.Errorf("broken config: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte("[servers.a]\nurl = \"http://h/\"\n"))
	f.Add([]byte("default_ttl = \"5m\"\n"))
	get := env(map[string]string{"HOME": "/h"})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("c.toml", data, get)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if c.DefaultTTL <= 0 || c.DefaultTTL > c.MaxTTL {
			t.Fatalf("accepted ttls %v / %v", c.DefaultTTL, c.MaxTTL)
		}
		for _, s := range c.Servers {
			if s.URL == nil || !strings.HasSuffix(s.URL.Path, "/") {
				t.Fatalf("server %q without a root URL", s.Name)
			}
		}
	})
}

package config

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"testing"
)

var systemSettings = System{
	Socket:       "/run/devpi-credd/socket",
	SharedSocket: "/run/devpi-credd-shared/socket",
	AllowUIDs:    []int{1000},
	Grants:       []string{GrantSession, GrantLock, GrantApproval},
}

// systemEnv is the system unit's environment.
var systemEnv = env(map[string]string{"XDG_CONFIG_HOME": "/etc", "XDG_STATE_HOME": "/var/lib", "XDG_RUNTIME_DIR": "/run"})

// ensureSystem merges, checks what the daemon would read, and that a
// second merge changes nothing.
func ensureSystem(t *testing.T, in string, s System) (string, *Config) {
	t.Helper()
	out, err := EnsureSystem("/etc/devpi-credd/config.toml", []byte(in), s, systemEnv)
	if err != nil {
		t.Fatalf("EnsureSystem: %v\n%s", err, in)
	}
	c, err := Parse("c.toml", out, systemEnv)
	if err != nil {
		t.Fatalf("the result does not load: %v\n%s", err, out)
	}
	again, err := EnsureSystem("c.toml", out, s, systemEnv)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("a second merge changed the file (%v):\n%s\n---\n%s", err, out, again)
	}
	return string(out), c
}

func TestEnsureSystemNew(t *testing.T) {
	out, c := ensureSystem(t, "", systemSettings)
	if c.Socket != systemSettings.Socket || c.SharedSocket != systemSettings.SharedSocket || !slices.Equal(c.AllowUIDs, []int{1000}) ||
		!slices.Equal(c.AllowGrant, []string{"session", "lock", "approval"}) || len(c.Servers) != 0 {
		t.Errorf("%+v\n%s", c, out)
	}
	if !strings.HasPrefix(out, "# devpi-credd in system mode") {
		t.Errorf("no header:\n%s", out)
	}
}

// Merging into a config keeps its comments, its other keys and servers,
// the uids and grants it had, and the place of each key.
func TestEnsureSystemMerges(t *testing.T) {
	in := `# the admin's notes
default_ttl = "10m"   # kept as written
allow_uids = [
  1001, # bob
]
allow_uids_grant = [ "lock" ]
SOCKET = "/elsewhere/socket"
shared_socket = "/elsewhere/shared/socket"

# the main server
[servers.main]
url = "https://devpi.example/"
`
	out, c := ensureSystem(t, in, systemSettings)
	want := `# the admin's notes
default_ttl = "10m"   # kept as written
allow_uids = [1001, 1000]
allow_uids_grant = ["lock", "session", "approval"]
socket = "/run/devpi-credd/socket"
shared_socket = "/run/devpi-credd-shared/socket"

# the main server
[servers.main]
url = "https://devpi.example/"
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if c.DefaultTTL.String() != "10m0s" || len(c.Servers) != 1 || !slices.Equal(c.AllowUIDs, []int{1001, 1000}) {
		t.Errorf("%+v", c)
	}
}

// What is there already is left as written.
func TestEnsureSystemKeepsWhatIsThere(t *testing.T) {
	in := "shared_socket = '/run/devpi-credd-shared/socket'\nsocket = \"/run/devpi-credd/socket\" # the owner's\nallow_uids = [ 1000,2000 ]\n" +
		"allow_uids_grant = [\"approval\", \"lock\", \"session\"]\n"
	out, _ := ensureSystem(t, in, systemSettings)
	if out != in {
		t.Errorf("changed:\n%s", out)
	}
}

// Without top-level keys, the new ones go above the first table and the
// comment on it; without a table, at the end.
func TestEnsureSystemPlacesNewKeys(t *testing.T) {
	in := "# devpi-credd configuration\n\n# ours\n[servers.main]\nurl = \"https://devpi.example/\"\n"
	out, c := ensureSystem(t, in, System{Socket: "/run/a/socket", SharedSocket: "/run/b/socket", AllowUIDs: []int{7}})
	want := "# devpi-credd configuration\n\nsocket = \"/run/a/socket\"\nshared_socket = \"/run/b/socket\"\nallow_uids = [7]\n\n# ours\n[servers.main]\nurl = \"https://devpi.example/\"\n"
	if out != want || len(c.Servers) != 1 {
		t.Errorf("got:\n%q\nwant:\n%q", out, want)
	}
	out, _ = ensureSystem(t, "default_ttl = \"1m\"", System{Socket: "/run/a/socket", SharedSocket: "/run/b/socket", AllowUIDs: []int{7}})
	if want := "default_ttl = \"1m\"\nsocket = \"/run/a/socket\"\nshared_socket = \"/run/b/socket\"\nallow_uids = [7]\n"; out != want {
		t.Errorf("got:\n%q\nwant:\n%q", out, want)
	}
}

// A config that does not load is not changed: the admin fixes it first.
func TestEnsureSystemRefusesABrokenConfig(t *testing.T) {
	for _, in := range []string{"allow_uids = [\n", "socket = \"relative\"\n", "[servers.x]\nurl = 3\n"} {
		if out, err := EnsureSystem("/etc/devpi-credd/config.toml", []byte(in), systemSettings, systemEnv); err == nil || !strings.Contains(err.Error(), "fix it first") {
			t.Errorf("%q: %v\n%s", in, err, out)
		}
	}
}

// AddServer on the merged file appends the server, and knows one that is
// there by its url.
func TestAddServerAfterEnsureSystem(t *testing.T) {
	base, _ := ensureSystem(t, "", systemSettings)
	root, _ := url.Parse("https://devpi.example/")
	out, name, added, err := AddServer("c.toml", []byte(base), "main", root, false, systemEnv)
	if err != nil || !added || name != "main" {
		t.Fatalf("%s %v %v", name, added, err)
	}
	c, err := Parse("c.toml", out, systemEnv)
	if err != nil || len(c.Servers) != 1 || c.Servers[0].TokenFile != "/var/lib/devpi-credd/tokens/main.token" || !slices.Equal(c.AllowUIDs, []int{1000}) {
		t.Fatalf("%+v %v", c, err)
	}
	again, name, added, err := AddServer("c.toml", out, "other", root, false, systemEnv)
	if err != nil || added || name != "main" || !bytes.Equal(again, out) {
		t.Errorf("the same url again: %s %v %v", name, added, err)
	}
}

package devpi

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// A file as devpi-client 7.3 writes it, with a key we must keep.
const clientAuth = `{
  "auth": {
    "http://127.0.0.1:3141/": [["alice", "alice-session"], ["root", "root-session"]],
    "http://127.0.0.1:3141/sub/": [["carol", "carol-session"]]
  },
  "basic_auth": {"http://127.0.0.1:3141/": ["b", "c"]}
}`

func TestStateDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth.json"), []byte(clientAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "current.json"), []byte(`{"login": "http://127.0.0.1:3141/+login", "index": "http://127.0.0.1:3141/alice/dev"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sd := StateDir{Dir: dir}
	root, err := sd.Root()
	if err != nil || root != "http://127.0.0.1:3141/" {
		t.Fatalf("Root = %q, %v", root, err)
	}
	for _, tt := range []struct{ root, user, want string }{
		{"http://127.0.0.1:3141/", "", "alice"},
		{"http://127.0.0.1:3141/", "root", "root"},
		{"http://127.0.0.1:3141/sub/", "", "carol"},
		{"http://127.0.0.1:3141/alice/dev/", "", "alice"},
	} {
		a, ok, err := sd.Auth(tt.root, tt.user)
		if err != nil || !ok || a.User != tt.want {
			t.Errorf("Auth(%s, %q) = %v %v %v, want %s", tt.root, tt.user, a, ok, err, tt.want)
		}
	}
	if _, ok, _ := sd.Auth("http://other/", ""); ok {
		t.Error("found a session for another server")
	}
	if err := sd.SetAuth("http://127.0.0.1:3141/", Auth{User: "root", Secret: "new-root"}); err != nil {
		t.Fatal(err)
	}
	a, _, _ := sd.Auth("http://127.0.0.1:3141/", "")
	if a.User != "root" || a.Secret != "new-root" {
		t.Errorf("most recent after SetAuth = %v", a)
	}
	if a, _, _ := sd.Auth("http://127.0.0.1:3141/", "alice"); a.Secret != "alice-session" {
		t.Error("SetAuth lost alice")
	}
	// devpi-client only sends the credentials of current.json's username.
	var cur map[string]any
	cb, _ := os.ReadFile(filepath.Join(dir, "current.json"))
	if err := json.Unmarshal(cb, &cur); err != nil || cur["username"] != "root" || cur["index"] == nil {
		t.Errorf("current.json after SetAuth: %s", cb)
	}
	var all map[string]json.RawMessage
	b, _ := os.ReadFile(filepath.Join(dir, "auth.json"))
	if err := json.Unmarshal(b, &all); err != nil || all["basic_auth"] == nil {
		t.Errorf("SetAuth dropped other keys: %s", b)
	}
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(filepath.Join(dir, "auth.json")); st.Mode().Perm() != 0o600 {
			t.Errorf("auth.json mode %v", st.Mode())
		}
	}
	user, ok, err := sd.DeleteAuth("http://127.0.0.1:3141/", "")
	if err != nil || !ok || user != "root" {
		t.Errorf("DeleteAuth = %q %v %v", user, ok, err)
	}
	if _, ok, _ := sd.DeleteAuth("http://nowhere/", ""); ok {
		t.Error("DeleteAuth found a session for another server")
	}

	empty := StateDir{Dir: filepath.Join(t.TempDir(), "missing")}
	if r, err := empty.Root(); err != nil || r != "" {
		t.Errorf("Root of missing dir = %q, %v", r, err)
	}
	if err := empty.SetRoot("http://h:1/"); err != nil {
		t.Fatal(err)
	}
	if r, _ := empty.Root(); r != "http://h:1/" {
		t.Errorf("Root after SetRoot = %q", r)
	}
	bad := t.TempDir()
	_ = os.WriteFile(filepath.Join(bad, "auth.json"), []byte("[1,2"), 0o600)
	if _, _, err := (StateDir{Dir: bad}).Auth("http://h/", ""); err == nil {
		t.Error("a broken auth.json was accepted silently")
	}
}

func TestCurrentUser(t *testing.T) {
	dir := t.TempDir()
	sd := StateDir{Dir: dir}
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if u, err := sd.CurrentUser(get); err != nil || u != "" {
		t.Errorf("no state: %q %v", u, err)
	}
	_ = os.WriteFile(filepath.Join(dir, "current.json"), []byte(`{"username": "bob"}`), 0o600)
	if u, _ := sd.CurrentUser(get); u != "bob" {
		t.Errorf("from current.json: %q", u)
	}
	env["DEVPI_USER"] = "carol"
	if u, _ := sd.CurrentUser(get); u != "carol" {
		t.Errorf("from DEVPI_USER: %q", u)
	}
}

func TestClientDir(t *testing.T) {
	env := map[string]string{"HOME": "/home/x"}
	get := func(k string) string { return env[k] }
	sd, _ := ClientDir(get)
	if sd.Dir != "/home/x/.devpi/client" || sd.CurrentPath != "" {
		t.Errorf("default = %+v", sd)
	}
	env["DEVPI_CLIENTDIR"] = "/tmp/dc"
	venv := t.TempDir()
	env["VIRTUAL_ENV"] = venv
	_ = os.WriteFile(filepath.Join(venv, "devpi.json"), []byte("{}"), 0o600)
	sd, _ = ClientDir(get)
	if sd.Dir != "/tmp/dc" || sd.CurrentPath != filepath.Join(venv, "devpi.json") {
		t.Errorf("with env = %+v", sd)
	}
}

// Sessions are looked up in order, each state directory's current user
// first: devpi-credd's own, then devpi-client's.
func TestFindSession(t *testing.T) {
	own, client := StateDir{Dir: t.TempDir()}, StateDir{Dir: t.TempDir()}
	const root = "http://h/"
	if err := client.SetAuth(root, Auth{User: "carol", Secret: "c"}); err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return "" }
	if a, ok, err := FindSession(root, getenv, own, client); err != nil || !ok || a.User != "carol" {
		t.Errorf("devpi-client's: %v %v %v", a, ok, err)
	}
	if err := own.SetAuth(root, Auth{User: "alice", Secret: "a"}); err != nil {
		t.Fatal(err)
	}
	if a, ok, err := FindSession(root, getenv, own, client); err != nil || !ok || a.User != "alice" {
		t.Errorf("its own first: %v %v %v", a, ok, err)
	}
	// $DEVPI_USER picks the user in each directory.
	if a, ok, err := FindSession(root, func(k string) string { return map[string]string{"DEVPI_USER": "carol"}[k] }, own, client); err != nil || !ok || a.User != "carol" {
		t.Errorf("DEVPI_USER: %v %v %v", a, ok, err)
	}
	if _, ok, err := FindSession("http://elsewhere/", getenv, own, client); err != nil || ok {
		t.Errorf("another server: %v %v", ok, err)
	}
}

// devpi-client is logged in where it is, or where it has no server yet;
// never elsewhere (that would log it out where it is).
func TestLogin(t *testing.T) {
	cd := StateDir{Dir: t.TempDir()}
	if err := cd.Login("http://h/", Auth{User: "alice", Secret: "s1"}); err != nil {
		t.Fatal(err)
	}
	if root, _ := cd.Root(); root != "http://h/" {
		t.Errorf("current server %q", root)
	}
	if err := cd.Login("http://h/", Auth{User: "alice", Secret: "s2"}); err != nil {
		t.Fatal(err)
	}
	if a, ok, _ := cd.Auth("http://h/", "alice"); !ok || a.Secret != "s2" {
		t.Errorf("auth %v", a)
	}
	var oe *OtherServerError
	if err := cd.Login("http://other/", Auth{User: "alice", Secret: "s3"}); !errors.As(err, &oe) || oe.Current != "http://h/" {
		t.Errorf("another server: %v", err)
	}
	if _, ok, _ := cd.Auth("http://other/", "alice"); ok {
		t.Error("logged in at another server")
	}
}

package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// sealSetup is a devpi-server that takes alice's tokens, a token file of
// hers, and where the sealed store goes.
func sealSetup(t *testing.T, s *session) (server, tokenFile string, tok *token.Token, sealed store.Sealed) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/+api" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "apiconfig", "result": map[string]any{"authstatus": []any{"ok", "alice", []any{}}}})
	}))
	t.Cleanup(srv.Close)
	tok, err := token.New(scriptRootKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(t.TempDir(), "root.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, tokenFile, tok, sealedStore(func(k string) string { return s.env[k] })
}

func openVault(t *testing.T, sealed store.Sealed, pass string) *store.Vault {
	t.Helper()
	v, err := sealed.Open([]byte(pass))
	if err != nil {
		t.Fatalf("opening the sealed store: %v", err)
	}
	return v
}

func TestTokenLoginSeal(t *testing.T) {
	s := newSession(t, &fakeDaemon{})
	server, tokenFile, tok, sealed := sealSetup(t, s)
	root, _ := devpi.ParseRoot(server)
	name := store.ServerName(root)

	// A plain login first: its token file is what sealing removes.
	s.run("", "token", "login", "--url", server, "-f", tokenFile).want(t, 0, "logged in 'alice'", "")
	plain := store.TokenPath(filepath.Join(s.env["XDG_STATE_HOME"], "devpi-credd"), name)
	if _, err := os.Stat(plain); err != nil {
		t.Fatalf("the plain login left no token file: %v", err)
	}

	r := s.run(fakePassphrase+"\n", "token", "login", "--seal", "--passphrase-stdin", "--url", server, "-f", tokenFile)
	r.want(t, 0, "stored for server '"+name+"' in the sealed store "+sealed.Path, "the running daemon opened the sealed store")
	if !strings.Contains(r.stderr, "removed the plain token file "+plain+", which held the token now sealed") {
		t.Errorf("stderr %q", r.stderr)
	}
	if _, err := os.Stat(plain); !os.IsNotExist(err) {
		t.Errorf("the plain token file is still there: %v", err)
	}
	if v := openVault(t, sealed, fakePassphrase); v.Tokens[name] != tok.Reveal() {
		t.Errorf("the vault holds %v", v.Tokens)
	}
	s.wantRequests(`/v1/unlock {"passphrase":"` + fakePassphrase + `"}`)
	if strings.Contains(r.stdout+r.stderr, fakePassphrase) || strings.Contains(r.stdout+r.stderr, tok.Reveal()) {
		t.Error("a secret was printed")
	}

	// A second server joins the store; the first one's token stays.
	other, _, _, _ := sealSetup(t, s)
	root2, _ := devpi.ParseRoot(other)
	s.run(fakePassphrase+"\n", "token", "login", "--seal", "--passphrase-stdin", "--url", other, "-f", tokenFile).want(t, 0, "in the sealed store", "opened")
	v := openVault(t, sealed, fakePassphrase)
	if len(v.Tokens) != 2 || v.Tokens[name] != tok.Reveal() || v.Tokens[store.ServerName(root2)] != tok.Reveal() {
		t.Errorf("the vault holds %d tokens: %v", len(v.Tokens), v.Tokens)
	}

	// A wrong passphrase opens nothing and changes nothing.
	before, _ := os.ReadFile(sealed.Path)
	r = s.run("wrong\n", "token", "login", "--seal", "--passphrase-stdin", "--url", server, "-f", tokenFile)
	r.want(t, 1, "", "wrong passphrase")
	if after, _ := os.ReadFile(sealed.Path); string(after) != string(before) {
		t.Error("the store changed")
	}
}

// A new store on the terminal: the passphrase twice, without echo.
func TestTokenLoginSealNewStoreOnTheTerminal(t *testing.T) {
	s := newSession(t, &fakeDaemon{}).typing("")
	server, tokenFile, _, sealed := sealSetup(t, s)
	s.secrets = []string{"one", "two"}
	r := s.run("", "token", "login", "--seal", "--url", server, "-f", tokenFile)
	r.want(t, 1, "", "devpi-credd: the passphrases differ; nothing done\n")
	if ok, _ := sealed.Exists(); ok {
		t.Error("a store was made")
	}
	s.secrets = []string{fakePassphrase, fakePassphrase}
	r = s.run("", "token", "login", "--seal", "--url", server, "-f", tokenFile)
	r.want(t, 0, "in the sealed store", "the running daemon opened the sealed store")
	if strings.Join(r.secretPrompts, "|") != "passphrase for the new sealed store: |the same passphrase again: " {
		t.Errorf("prompts %q", r.secretPrompts)
	}
	openVault(t, sealed, fakePassphrase)

	// No daemon: the store is made all the same, and the next steps said.
	s.env["DEVPI_CREDD_SOCKET"] = filepath.Join(t.TempDir(), "none", "socket")
	s.secrets = []string{fakePassphrase}
	s.run("", "token", "login", "--seal", "--url", server, "-f", tokenFile).want(t, 0, "in the sealed store",
		"the daemon is not running: 'devpi-credd serve' starts it with the store closed; 'devpi-credd unlock' opens it\n")
}

func TestTokenLoginSealUsage(t *testing.T) {
	s := newSession(t, &fakeDaemon{})
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--seal", "--keychain"}, "give --seal or --keychain, not both"},
		{[]string{"--passphrase-stdin", "-f", "x"}, "--passphrase-stdin goes with --seal"},
		{[]string{"--seal", "--passphrase-stdin", "-f", "-"}, "--passphrase-stdin and -f - both read standard input"},
		{[]string{"--seal", "--devpi-client", "-f", "x"}, "--devpi-client would write the token into devpi-client's auth.json in the clear"},
	} {
		s.run("", append([]string{"token", "login", "--url", "http://127.0.0.1:9/"}, tt.args...)...).want(t, 2, "", tt.want)
	}
	s.wantRequests()
}

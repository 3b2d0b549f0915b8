package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
)

// writeCert writes a self-signed certificate and its key (mode keyMode)
// into dir.
func writeCert(t *testing.T, dir string, keyMode os.FileMode) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "exchange.test"}, DNSNames: []string{"exchange.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, keyMode); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func checkConfig(t *testing.T, dir, exchange string) (*config.Config, error) {
	t.Helper()
	text := configText("http://127.0.0.1:3141/", filepath.Join(dir, "local.token"), filepath.Join(dir, "run", "s"), filepath.Join(dir, "audit.log"),
		`indexes = ["team/release"]
[exchange]
audience = "devpi"
`+exchange+`
[[exchange.publishers]]
server = "local"
issuer = "https://ci.example"
indexes = ["team/release"]
any_project = true
claims = { repository = "org/repo" }
`)
	return config.Parse(filepath.Join(dir, "config.toml"), []byte(text), func(string) string { return "" })
}

// What serve checks when it starts, beyond loading the config, and
// 'config check' with it: a tls_key others can read is refused as a
// token file is; so are a replay_dir others can write and a listen
// address that is not one.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, 0o600)
	openDir := t.TempDir()
	openCert, openKey := writeCert(t, openDir, 0o640)
	shared := filepath.Join(t.TempDir(), "replay")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		exchange, want string
	}{
		"plain http":                    {`listen = "127.0.0.1:0"`, ""},
		"tls":                           {`listen = "127.0.0.1:0"` + "\ntls_cert = \"" + cert + "\"\ntls_key = \"" + key + "\"", ""},
		"a key others can read":         {`listen = "127.0.0.1:0"` + "\ntls_cert = \"" + openCert + "\"\ntls_key = \"" + openKey + "\"", "chmod 600"},
		"a key that is missing":         {`listen = "127.0.0.1:0"` + "\ntls_cert = \"" + cert + "\"\ntls_key = \"" + key + ".gone\"", "no such file"},
		"a key that is not the cert's":  {`listen = "127.0.0.1:0"` + "\ntls_cert = \"" + cert + "\"\ntls_key = \"" + openKey + "\"", "certificate"},
		"a replay_dir others can write": {`listen = "127.0.0.1:0"` + "\nreplay_dir = \"" + shared + "\"", "writable by others"},
		"a port past 65535":             {`listen = "127.0.0.1:99999"`, "exchange.listen"},
	} {
		if name == "a key that is not the cert's" {
			if err := os.Chmod(openKey, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := checkConfig(t, dir, c.exchange)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = Check(cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %v, want one line with %q", name, err, c.want)
		}
		if name == "a key that is not the cert's" {
			if err := os.Chmod(openKey, 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Check (config check) makes nothing: a replay_dir that does not exist
// yet is a note, not an error, and is not made; serve makes it.
func TestCheckMakesNoReplayDir(t *testing.T) {
	dir := t.TempDir()
	replay := filepath.Join(t.TempDir(), "state", "replay")
	cfg, err := checkConfig(t, dir, `listen = "127.0.0.1:0"`+"\nreplay_dir = \""+replay+"\"")
	if err != nil {
		t.Fatal(err)
	}
	notes, err := Check(cfg)
	if err != nil || len(notes) != 1 || notes[0] != "replay_dir "+replay+" does not exist yet: serve makes it (0700)" {
		t.Errorf("Check of a missing replay_dir: %q %v", notes, err)
	}
	if _, err := os.Lstat(filepath.Dir(replay)); err == nil {
		t.Errorf("Check made %s", filepath.Dir(replay))
	}
}

// serve refuses to start on what Check refuses: New makes the checks.
func TestNewChecks(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, 0o644)
	cfg, err := checkConfig(t, dir, `listen = "127.0.0.1:0"`+"\ntls_cert = \""+cert+"\"\ntls_key = \""+key+"\"")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg, Getenv: func(string) string { return "" }}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("New with a tls_key others can read: %v", err)
	}
}

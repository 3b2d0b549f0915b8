package helper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devpi-credd/devpi-credd/localapi"
)

// fakeSource answers like the daemon for one server.
type fakeSource struct {
	got  []localapi.CredentialsRequest
	down bool
}

func (f *fakeSource) Credentials(_ context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	f.got = append(f.got, req)
	switch {
	case f.down:
		return nil, fmt.Errorf("%w (nothing answers on /run/s)", ErrNotRunning)
	case !strings.Contains(req.URL, "devpi.example"):
		return nil, &APIError{Status: 404, Code: localapi.CodeNotFound, Msg: "no configured server matches " + req.URL}
	case req.Username != "" && req.Username != "alice":
		return nil, &APIError{Status: 403, Code: localapi.CodeRefused, Msg: "the token is user \"alice\"'s"}
	}
	return &localapi.Credentials{Username: "alice", Password: "devpi-TOKEN", Expires: 1800000000}, nil
}

// noTerminal is an Approver with nobody to ask: a test never reads the
// terminal it runs on.
var noTerminal = Approver{Terminal: func() (io.ReadWriteCloser, error) { return nil, errors.New("no tty in this test") }}

func TestKeyringProtocol(t *testing.T) {
	const idx = "https://devpi.example/alice/dev/+simple/"
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderr  string // substring; "" means empty
		askUser string
	}{
		// pip >= 26.2: JSON creds, user name known or not.
		{"pip 26.2 no user", []string{"--mode=creds", "--output=json", "get", idx}, 0, `{"expires":1800000000,"password":"devpi-TOKEN","username":"alice"}` + "\n", "", ""},
		{"pip 26.2 user", []string{"--mode=creds", "--output=json", "get", idx, "alice"}, 0, `{"expires":1800000000,"password":"devpi-TOKEN","username":"alice"}` + "\n", "", "alice"},
		// pip 23.1 - 26.1: plain password, user name always given.
		{"pip 25 plain", []string{"get", idx, "alice"}, 0, "devpi-TOKEN\n", "", "alice"},
		{"pip netloc", []string{"get", "devpi.example", "alice"}, 0, "devpi-TOKEN\n", "", "alice"},
		// uv: with a user name, plain; without, creds mode after the positionals.
		{"uv user", []string{"get", "https://devpi.example/", "alice"}, 0, "devpi-TOKEN\n", "", "alice"},
		{"uv creds", []string{"get", "https://devpi.example/alice/dev/+simple/", "--mode", "creds"}, 0, "alice\ndevpi-TOKEN\n", "", ""},
		{"json password", []string{"get", idx, "alice", "--output", "json"}, 0, `{"password":"devpi-TOKEN"}` + "\n", "", "alice"},
		{"backend flag ignored", []string{"-b", "keyring.backends.fail.Keyring", "get", idx, "alice"}, 0, "devpi-TOKEN\n", "", "alice"},
		{"attached backend flag", []string{"-bkeyring.backends.fail.Keyring", "get", idx, "alice"}, 0, "devpi-TOKEN\n", "", "alice"},
		// Not ours: exit 1, no output at all.
		{"not found", []string{"--mode=creds", "--output=json", "get", "https://pypi.org/simple/"}, 1, "", "", ""},
		// Ours but refused: exit 1, one line why.
		{"wrong user", []string{"get", idx, "bob"}, 1, "", "devpi-credd: no credentials for " + idx + `: the token is user "alice"'s`, "bob"},
		// Usage.
		{"password mode needs user", []string{"get", idx}, 2, "", "get requires service and username", ""},
		{"unknown flag", []string{"--frobnicate", "get", idx}, 2, "", "unrecognized arguments: --frobnicate", ""},
		{"bad mode", []string{"--mode", "x", "get", idx, "u"}, 2, "", "invalid choice: 'x'", ""},
		{"too many", []string{"get", idx, "u", "extra"}, 2, "", "unrecognized arguments: extra", ""},
		{"bad op", []string{"list", idx}, 2, "", "invalid choice: 'list'", ""},
		{"dangling mode", []string{"get", idx, "--mode"}, 2, "", "expected one argument", ""},
		// Writes are refused, never prompted for.
		{"set", []string{"set", idx, "alice"}, 1, "", "keyring set is not supported", ""},
		{"del", []string{"del", idx, "alice"}, 1, "", "keyring del is not supported", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{}
			var out, errb bytes.Buffer
			code := Keyring(context.Background(), tt.args, &out, &errb, src, noTerminal)
			if code != tt.code || out.String() != tt.stdout {
				t.Errorf("exit %d stdout %q, want %d %q (stderr %q)", code, out.String(), tt.code, tt.stdout, errb.String())
			}
			if tt.stderr == "" && errb.Len() != 0 || tt.stderr != "" && !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", errb.String(), tt.stderr)
			}
			if len(src.got) == 1 && src.got[0].Username != tt.askUser {
				t.Errorf("asked for user %q, want %q", src.got[0].Username, tt.askUser)
			}
			if tt.code == 2 && len(src.got) != 0 {
				t.Error("a usage error reached the daemon")
			}
		})
	}
}

// matchingSource is a stopped daemon whose config knows devpi.example.
type matchingSource struct{ fakeSource }

func (matchingSource) Matches(service string) bool { return strings.Contains(service, "devpi.example") }

func TestKeyringDaemonDownOtherService(t *testing.T) {
	src := &matchingSource{fakeSource{down: true}}
	var out, errb bytes.Buffer
	if code := Keyring(context.Background(), []string{"get", "https://pypi.org/simple/", "bob"}, &out, &errb, src, noTerminal); code != 1 || out.Len()+errb.Len() != 0 {
		t.Errorf("unrelated service, daemon down: exit %d, %q %q", code, out.String(), errb.String())
	}
	if code := Keyring(context.Background(), []string{"get", "https://devpi.example/x/", "bob"}, &out, &errb, src, noTerminal); code != 1 || !strings.Contains(errb.String(), "not running") {
		t.Errorf("our service, daemon down: exit %d, %q", code, errb.String())
	}
}

func TestKeyringDaemonDown(t *testing.T) {
	var out, errb bytes.Buffer
	code := Keyring(context.Background(), []string{"--mode=creds", "--output=json", "get", "https://u:pw@devpi.example/x/"}, &out, &errb, &fakeSource{down: true}, noTerminal)
	if code != 1 || out.Len() != 0 {
		t.Errorf("exit %d stdout %q", code, out.String())
	}
	if got := errb.String(); !strings.HasPrefix(got, "devpi-credd: no credentials for https://devpi.example/x/: devpi-credd daemon is not running") ||
		strings.Count(got, "\n") != 1 || strings.Contains(got, "pw") {
		t.Errorf("stderr %q", got)
	}
}

// BenchmarkNotRunning is the time a client takes to say that no daemon runs
// (the target: well under 100 ms).
func BenchmarkNotRunning(b *testing.B) {
	c := &Client{Socket: b.TempDir() + "/no-daemon"}
	for b.Loop() {
		if _, err := c.Status(context.Background()); err == nil {
			b.Fatal("a daemon answered")
		}
	}
}

// The one line a failed lookup prints names the service without the
// password a caller put in it, whatever the password holds.
func TestKeyringErrorLineHasNoPassword(t *testing.T) {
	for _, service := range []string{
		"https://u:Pw#Qx1@devpi.example/x/",
		"https://u:Pw?Qx2@devpi.example/x/?token=Qx3",
		"https://u:Pw@Qx4@devpi.example/x/",
		"u:Pw/Qx5@devpi.example:3141",
	} {
		var out, errb bytes.Buffer
		code := Keyring(context.Background(), []string{"get", service, "bob"}, &out, &errb, &fakeSource{}, noTerminal)
		if code != KeyringNotFound || !strings.Contains(errb.String(), "devpi.example") {
			t.Errorf("%s: exit %d, %q", service, code, errb.String())
		}
		if strings.Contains(errb.String(), "Pw") || strings.Contains(errb.String(), "Qx") {
			t.Errorf("%s: the password leaked: %q", service, errb.String())
		}
	}
}

func FuzzKeyringArgs(f *testing.F) {
	f.Add("--mode=creds\x00--output=json\x00get\x00https://devpi.example/x/")
	f.Add("get\x00h\x00u")
	f.Add("-bx\x00--mode\x00creds\x00get")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		var out, errb bytes.Buffer
		code := Keyring(context.Background(), args, &out, &errb, &fakeSource{}, noTerminal)
		if code != 0 && out.Len() != 0 && !strings.Contains(joined, "-h") {
			t.Fatalf("exit %d with output %q", code, out.String())
		}
		if code == 0 && strings.Contains(errb.String(), "devpi-credd:") {
			t.Fatalf("success with an error line: %q", errb.String())
		}
	})
}

// KeyringMain with a config that names devpi.example, no daemon, and a
// $DEVPI_CREDD_DAEMON_UID that is not a uid: a service that is not ours
// still gets no line (the bad uid is not a broken config).
func TestKeyringMainBadDaemonUID(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "devpi-credd", "config.toml")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	text := "socket = \"" + filepath.Join(dir, "no-daemon") + "\"\n[servers.local]\nurl = \"https://devpi.example/\"\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XDG_CONFIG_HOME": dir, "HOME": dir, "DEVPI_CREDD_DAEMON_UID": "abc"}
	var out, errb bytes.Buffer
	if code := KeyringMain([]string{"get", "https://pypi.org/simple/", "bob"}, &out, &errb, func(k string) string { return env[k] }); code != 1 || out.Len()+errb.Len() != 0 {
		t.Errorf("not ours, daemon down, a bad DEVPI_CREDD_DAEMON_UID: exit %d, %q %q", code, out.String(), errb.String())
	}
	if uids, err := TrustedUIDs(func(k string) string { return env[k] }); uids != nil || err == nil || !strings.Contains(err.Error(), `"abc" is not a uid`) {
		t.Errorf("TrustedUIDs: %v %v", uids, err)
	}
}

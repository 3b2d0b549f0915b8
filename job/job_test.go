//go:build unix

package job

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/jobdir"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// The test binary is the job directory's reaper, as devpi-credd is, and
// the keyring helper the job's child runs (with testKeyringEnv set).
func TestMain(m *testing.M) {
	if dir := os.Getenv(jobdir.ReaperEnv); dir != "" {
		os.Exit(jobdir.Reap(dir, os.Stdin))
	}
	if os.Getenv(testKeyringEnv) != "" {
		os.Exit(helper.KeyringMain(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

const testKeyringEnv = "DEVPI_CREDD_JOB_TEST_KEYRING"

var testKey = []byte("job test root key")

// start starts a job for a child on server http://h/ with limits, whose
// environment holds the long-lived token in both variables.
func start(t *testing.T, limits token.Limits) (*Job, *token.Token) {
	t.Helper()
	root, err := token.New(testKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	u, err := devpi.ParseRoot("http://h/")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	j, err := Start(context.Background(), Spec{Server: config.Server{Name: "job", URL: u, Limits: limits}, Root: root, TTL: time.Minute},
		Options{ForChild: true, Environ: []string{"PATH=/usr/bin:/bin", "HOME=/nowhere", "DEVPI_CREDD_TOKEN=" + root.Reveal(), "DEVPI_CREDD_TOKEN_FILE=/x"},
			Getenv: func(k string) string { return map[string]string{"PATH": "/usr/bin:/bin"}[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, root
}

func env(j *Job, key string) string {
	for _, kv := range j.Env() {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// The child's world: the job's socket answers with tokens that die by the
// deadline and carry the job's limits; the long-lived token is in no
// variable; devpi-client is logged in; Close removes everything.
func TestStartAndClose(t *testing.T) {
	limits, _ := token.ParseLimits(nil, []string{"alice/dev"}, nil)
	j, root := start(t, limits)
	for _, kv := range j.Env() {
		if strings.Contains(kv, root.Reveal()) || strings.HasPrefix(kv, "DEVPI_CREDD_TOKEN") {
			t.Errorf("the child's environment holds %q", kv[:min(len(kv), 30)])
		}
	}
	if !strings.HasPrefix(env(j, "PATH"), filepath.Join(j.Dir(), "bin")+":") || env(j, "PIP_KEYRING_PROVIDER") != "subprocess" ||
		!strings.HasPrefix(env(j, "PYTHONPATH"), filepath.Join(j.Dir(), "python")) {
		t.Errorf("environment: %q", j.Env())
	}
	c, err := (&helper.Client{Socket: env(j, "DEVPI_CREDD_SOCKET")}).Credentials(context.Background(), localapi.CredentialsRequest{URL: "http://h/alice/dev/"})
	if err != nil {
		t.Fatal(err)
	}
	if time.Unix(c.Expires, 0).After(j.Deadline()) || !strings.Contains(strings.Join(c.Caveats, " "), "indexes=alice/dev") {
		t.Errorf("credentials: %+v (deadline %s)", c, j.Deadline())
	}
	auth, ok, err := devpi.StateDir{Dir: env(j, "DEVPI_CLIENTDIR")}.Auth("http://h/", "alice")
	if err != nil || !ok || !strings.HasPrefix(auth.Secret, "devpi-") {
		t.Errorf("devpi-client's login: %v %v %v", auth, ok, err)
	}
	// The devpi-client session and the token above.
	if n := j.Minted(); n != 2 {
		t.Errorf("Minted = %d, want 2", n)
	}
	dir := j.Dir()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the job's directory is left: %v", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	j, _ := start(t, token.Limits{})
	noExec := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		argv     []string
		code     int
		exitCode int // of an *ExitError, when the command did not run
	}{
		{[]string{"true"}, 0, 0},
		{[]string{"sh", "-c", "exit 7"}, 7, 0},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15, 0},
		{[]string{"no-such-command-here"}, 0, 127},
		{[]string{noExec}, 0, 126},
	} {
		code, err := j.Run(context.Background(), tt.argv, Stdio{}, nil)
		var ee *ExitError
		switch {
		case tt.exitCode != 0 && (!errors.As(err, &ee) || ee.Code != tt.exitCode):
			t.Errorf("%v: %d, %v; want an ExitError %d", tt.argv, code, err, tt.exitCode)
		case tt.exitCode == 0 && (err != nil || code != tt.code):
			t.Errorf("%v: %d, %v; want %d", tt.argv, code, err, tt.code)
		}
	}
}

// A signal to the job reaches the child, whose own handling decides the
// exit code.
func TestRunForwardsSignals(t *testing.T) {
	j, _ := start(t, token.Limits{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Closed after Run returns: the child's start reads it, and the line
	// it writes is no happens-before edge the race detector sees.
	defer w.Close()
	sigs := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		code, _ := j.Run(context.Background(), []string{"sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`}, Stdio{Stdout: w}, sigs)
		done <- code
	}()
	if line, _ := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		t.Fatalf("the child said %q", line)
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 42 {
			t.Errorf("exit code %d, want the trap's 42", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the signal did not reach the child")
	}
}

// A signal that came before the command started ends the job: the
// command never runs.
func TestSignalBeforeStart(t *testing.T) {
	j, _ := start(t, token.Limits{})
	marker := filepath.Join(t.TempDir(), "ran")
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGINT
	_, err := j.Run(context.Background(), []string{"touch", marker}, Stdio{}, sigs)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 128+2 {
		t.Errorf("Run = %v, want an ExitError 130", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

// A job for env: no socket, no child; one upload token for its one index.
func TestMintOnly(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	root, _ := token.New(testKey, "alice", "abcd2345")
	u, _ := devpi.ParseRoot("http://h/")
	limits, _ := token.ParseLimits(nil, []string{"alice/dev"}, nil)
	j, err := Start(context.Background(), Spec{Server: config.Server{Name: "job", URL: u, Limits: limits}, Root: root, TTL: time.Minute}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	upload, err := j.UploadURL()
	if err != nil || upload != "http://h/alice/dev/" {
		t.Fatalf("UploadURL = %q, %v", upload, err)
	}
	c, err := j.Mint(context.Background(), localapi.CredentialsRequest{URL: upload}, "env")
	if err != nil || !strings.Contains(strings.Join(c.Caveats, " "), "allowed=upload") {
		t.Fatalf("Mint = %+v, %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(j.Dir(), "run")); err == nil {
		t.Error("a job without a child has a socket")
	}
}

func TestFormatVars(t *testing.T) {
	vars := UploadVars("http://h/a/b/", "alice", "devpi-it's")
	shell, err := FormatVars("shell", vars)
	if err != nil || !strings.Contains(shell, `export TWINE_PASSWORD='devpi-it'\''s'`+"\n") || !strings.Contains(shell, "export UV_PUBLISH_URL='http://h/a/b/'\n") {
		t.Errorf("shell: %q, %v", shell, err)
	}
	for _, f := range []string{"dotenv", "github"} {
		if out, err := FormatVars(f, vars); err != nil || !strings.Contains(out, "TWINE_USERNAME=alice\n") {
			t.Errorf("%s: %q, %v", f, out, err)
		}
	}
	if _, err := FormatVars("dotenv", []Var{{"X", "a\nb"}}); err == nil {
		t.Error("a line break in a dotenv value was accepted")
	}
	if _, err := FormatVars("yaml", vars); err == nil {
		t.Error("an unknown format was accepted")
	}
}

// The variable an identity token came from (GitLab's <AUDIENCE>_ID_TOKEN,
// named after the audience) is gone from the child's environment, as
// TokenEnv's are; others of the kind stay.
func TestSecretEnvHidden(t *testing.T) {
	root, err := token.New(testKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := devpi.ParseRoot("http://h/")
	t.Setenv("TMPDIR", t.TempDir())
	j, err := Start(context.Background(), Spec{Server: config.Server{Name: "job", URL: u}, Root: root, TTL: time.Minute, SecretEnv: []string{"DEVPI_EXAMPLE_COM_ID_TOKEN"}},
		Options{ForChild: true, Environ: []string{"PATH=/usr/bin:/bin", "DEVPI_EXAMPLE_COM_ID_TOKEN=GL.JWT.AUD", "DEVPI_CREDD_ID_TOKEN=GL.JWT.OURS", "VAULT_ID_TOKEN=GL.JWT.VAULT"},
			Getenv: func(k string) string { return map[string]string{"PATH": "/usr/bin:/bin"}[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, kv := range j.Env() {
		if strings.Contains(kv, "GL.JWT.AUD") || strings.Contains(kv, "GL.JWT.OURS") {
			t.Errorf("the child's environment holds %q", kv)
		}
	}
	if env(j, "VAULT_ID_TOKEN") != "GL.JWT.VAULT" {
		t.Error("a variable the job does not use is gone")
	}
}

//go:build unix

package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// testClock is the daemon's clock, which the test moves: codes are each
// good once, in their 30 s step.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) step() { c.mu.Lock(); c.t = c.t.Add(30 * time.Second); c.mu.Unlock() }

// coProcess answers the setup's URI with the code of its secret at the
// clock's time, on the command's standard input: a program driving setup
// with --code-stdin, as the e2e tests' person does.
type coProcess struct {
	clock  *testClock
	in     *io.PipeWriter
	secret chan []byte
	buf    strings.Builder
}

func (p *coProcess) Write(b []byte) (int, error) {
	p.buf.Write(b)
	for line := range strings.Lines(p.buf.String()) {
		if uri, ok := strings.CutPrefix(line, "otpauth://"); ok && strings.HasSuffix(uri, "\n") {
			secret, err := approval.ParseURI(strings.TrimSpace(line))
			if err != nil {
				return 0, err
			}
			p.buf.Reset()
			p.secret <- secret
			go func() { _, _ = io.WriteString(p.in, approval.Code(secret, p.clock.Now())+"\n") }()
		}
	}
	return len(b), nil
}

// The commands against the real daemon in personal sealed mode: unlock
// opens the store; approval setup enrols with a code computed from the URI
// it printed; uploads then need a fresh code (get, devpi-login), reads do
// not; lock closes the store; approval off turns it off.
func TestCommandsAgainstTheDaemon(t *testing.T) {
	s := newSession(t, &fakeDaemon{})
	stateDir := filepath.Join(s.env["XDG_STATE_HOME"], "devpi-credd")
	socket := filepath.Join(t.TempDir(), "run", "socket")
	s.env["DEVPI_CREDD_SOCKET"] = socket
	root, err := token.New(scriptRootKey, "alice", "abcd2345", token.Expires(time.Now().Add(24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	sealed := store.Sealed{Path: store.SealedPath(stateDir), WorkFactor: 10}
	if err := sealed.Seal([]byte(fakePassphrase), &store.Vault{Tokens: map[string]string{"local": root.Reveal()}}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(fakeRoot)
	clock := &testClock{t: time.Now()}
	d, err := daemon.New(daemon.Options{
		Config: &config.Config{Socket: socket, AuditLog: filepath.Join(stateDir, "audit.log"), DefaultTTL: time.Hour, MaxTTL: time.Hour, MaxSessionTTL: 10 * time.Hour,
			Servers: []config.Server{{Name: "local", URL: u, TokenFile: filepath.Join(stateDir, "tokens", "local.token"), ReadScope: "server"}}},
		Getenv: func(k string) string { return s.env[k] }, Now: clock.Now, StateDir: stateDir, SealWorkFactor: 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.RunOn(ctx, l, nil) }()
	t.Cleanup(func() { cancel(); <-ran; d.Close() })

	upload := fakeRoot + "alice/dev/"
	s.run("", "status").want(t, 0, "sealed store  not open", "")
	s.run("", "get", upload+"+simple/").want(t, 1, "", "sealed")
	s.run(fakePassphrase+"\n", "unlock", "--passphrase-stdin").want(t, 0, "daemon unlocked, its sealed store open\n", "")
	s.run("", "get", upload+"+simple/").want(t, 0, "devpi-", "")

	// setup, driven by a program that reads the URI and answers its code.
	stdinR, stdinW := io.Pipe()
	co := &coProcess{clock: clock, in: stdinW, secret: make(chan []byte, 1)}
	go func() { _, _ = io.WriteString(stdinW, fakePassphrase+"\n") }()
	s.runWith(bufio.NewReader(stdinR), co, "approval", "setup", "--passphrase-stdin", "--code-stdin", "--account", "alice@test").
		want(t, 0, "approval on: every token that can upload needs a one-time code from alice@test and lives 2m0s at most\n", "")
	secret := <-co.secret
	s.run("", "approval", "status").want(t, 0, "authenticator   alice@test", "")

	// Reads need nothing; an upload without a terminal says what to run;
	// with a fresh code it is handed out; the same code again is refused.
	s.run("", "get", upload+"+simple/").want(t, 0, "devpi-", "")
	s.run("", "get", upload).want(t, 1, "", "needs a one-time code and there is no terminal to ask on")
	clock.step()
	code := approval.Code(secret, clock.Now())
	s.run(code+"\n", "get", "--code-stdin", upload).want(t, 0, "devpi-", "")
	s.run(code+"\n", "get", "--code-stdin", upload).want(t, 1, "", "one-time code already used")
	// On the terminal.
	clock.step()
	s.typing(approval.Code(secret, clock.Now()) + "\n")
	s.run("", "get", upload).want(t, 0, "devpi-", "")
	// devpi-login without a code: a session that cannot upload.
	s.run("", "devpi-login").want(t, 0, "devpi-client logged in", "this session cannot upload")
	clock.step()
	s.run(approval.Code(secret, clock.Now())+"\n", "devpi-login", "--code-stdin").want(t, 0, "devpi-client logged in", "")

	// lock closes the store; unlock asks its passphrase again.
	s.run("", "lock").want(t, 0, "daemon locked", "")
	s.run("", "status").want(t, 0, "sealed store  not open", "")
	s.run(fakePassphrase+"\n", "unlock", "--passphrase-stdin").want(t, 0, "its sealed store open", "")

	clock.step()
	s.run(fakePassphrase+"\n"+approval.Code(secret, clock.Now())+"\n", "approval", "off", "--passphrase-stdin", "--code-stdin").
		want(t, 0, "approval off", "")
	s.run("", "get", upload).want(t, 0, "devpi-", "")
}

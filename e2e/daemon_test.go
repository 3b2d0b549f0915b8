//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// daemonProc is a `devpi-credd serve` started for one test.
type daemonProc struct {
	cmd    *exec.Cmd
	socket string
	logs   *lockedBuffer
	done   chan error
	client *helper.Client
}

// lockedBuffer collects a running process's output; the test may read it
// while the process still writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runtimeDir is u's private XDG_RUNTIME_DIR, which holds the socket.
func (u *user) runtimeDir() string { return filepath.Join(u.home, "run") }

// serve starts the daemon as u, with extra environment, and waits until
// it answers on its socket.
func (u *user) serve(t *testing.T, extra ...string) *daemonProc {
	t.Helper()
	if err := os.MkdirAll(u.runtimeDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bed.bin, "serve", "--log-format", "json", "--log-level", "debug")
	cmd.Env = u.env(append(u.daemonEnv(), extra...)...)
	p := startProc(t, cmd, filepath.Join(u.runtimeDir(), "devpi-credd", "socket"))
	p.client = &helper.Client{Socket: p.socket}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.client.Status(context.Background()); err == nil {
			break
		}
		select {
		case err := <-p.done:
			p.done = nil
			t.Fatalf("devpi-credd serve exited: %v\n%s", err, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("devpi-credd serve did not answer:\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// startProc starts cmd, a daemon serving on socket, which stops with the
// test.
func startProc(t *testing.T, cmd *exec.Cmd, socket string) *daemonProc {
	t.Helper()
	p := &daemonProc{cmd: cmd, socket: socket, logs: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	// Registered before anything can fail: the daemon never outlives the test.
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *daemonProc) stop(t *testing.T) {
	if p.done == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("devpi-credd serve exited with %v\n%s", err, p.logs)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("devpi-credd serve ignored SIGTERM")
	}
	p.done = nil
	if _, err := os.Lstat(p.socket); err == nil {
		t.Errorf("the socket %s is left after SIGTERM", p.socket)
	}
}

// env adds the runtime dir: every devpi-credd of u finds the same socket.
func (u *user) daemonEnv() []string { return []string{"XDG_RUNTIME_DIR=" + u.runtimeDir()} }

// setupDaemonUser makes a user with a long-lived token stored by
// 'token login' and returns it with that root token.
func setupDaemonUser(t *testing.T) (*user, *token.Token) {
	t.Helper()
	u := newUser(t)
	u.login(t)
	rootFile := filepath.Join(u.home, "root.token")
	u.credd(t, 0, "token", "create", "-o", rootFile)
	u.credd(t, 0, "token", "login", "-f", rootFile, "--name", "local")
	return u, parseToken(t, readFile(t, rootFile))
}

func (u *user) get(t *testing.T, want int, args ...string) result {
	t.Helper()
	r := u.runEnv(t, u.daemonEnv(), "", bed.bin, append([]string{"get"}, args...)...)
	return u.expect(t, want, r, "devpi-credd get", args)
}

func credsOf(t *testing.T, r result) (*localapi.Credentials, *token.Token) {
	t.Helper()
	var c localapi.Credentials
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("get --json: %v: %s", err, r)
	}
	return &c, parseToken(t, c.Password)
}

// TestDaemonUpload: a token from `devpi-credd get` uploads with twine to the
// index in the URL and is refused for another index and after its ttl.
func TestDaemonUpload(t *testing.T) {
	u, root := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	prod := u.newIndex(t, "prod")
	d := u.serve(t)

	c, tok := credsOf(t, u.get(t, 0, "--json", bed.url+dev+"/"))
	if c.Username != u.name || c.TokenID != root.ID() || c.Server != "local" {
		t.Errorf("credentials: %+v", c)
	}
	mustUpload(t, u.twineUpload(t, dev, tok, u.wheel(t, "pkg-d", "1.0")))
	mustRefuse(t, u.twineUpload(t, prod, tok, u.wheel(t, "pkg-d", "1.1")), "Token denied access to index '"+prod+"'")

	// Plain output is the token alone, for scripts.
	plain := strings.TrimSpace(u.get(t, 0, bed.url+dev+"/").stdout)
	if !strings.HasPrefix(plain, "devpi-") || strings.Contains(plain, "\n") {
		t.Errorf("get printed %q", plain)
	}

	// After its ttl the server refuses it.
	_, short := credsOf(t, u.get(t, 0, "--json", "--ttl", "2s", bed.url+dev+"/"))
	mustUpload(t, u.twineUpload(t, dev, short, u.wheel(t, "pkg-d", "1.2")))
	exp := short.Scope().Expires
	for time.Now().Before(exp.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	mustRefuse(t, u.twineUpload(t, dev, short, u.wheel(t, "pkg-d", "1.3")), "Token expired at")

	// Not a configured server: exit 1, one line.
	r := u.get(t, 1, "http://127.0.0.1:9/x/y/")
	if !strings.Contains(r.stderr, "no configured server matches") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("unknown server: %s", r)
	}

	d.stop(t)
	checkNoSecrets(t, d, u, root, tok, short)

	// With the daemon stopped: exit 3, one line that says so.
	r = u.get(t, 3, bed.url+dev+"/")
	if !strings.Contains(r.stderr, "daemon is not running") {
		t.Errorf("stopped daemon: %s", r)
	}
}

// checkNoSecrets greps the audit log and the daemon's log for any token or
// signature.
func checkNoSecrets(t *testing.T, d *daemonProc, u *user, toks ...*token.Token) {
	t.Helper()
	audit := readFile(t, filepath.Join(u.home, ".local", "state", "devpi-credd", "audit.log"))
	if !strings.Contains(audit, `"event":"mint"`) {
		t.Errorf("audit log has no mint: %s", audit)
	}
	for _, tok := range toks {
		noSecret(t, result{stdout: audit, stderr: ""}, tok)
		noSecret(t, result{stdout: d.logs.String()}, tok)
	}
}

// TestDaemonReadInheritsBases: a read token for an index also covers the
// files the index inherits from its bases, which devpi serves from the
// base's own URL: pip installs a package that lives only in the base.
func TestDaemonReadInheritsBases(t *testing.T) {
	u, root := setupDaemonUser(t)
	base := u.newIndex(t, "base")
	dev := u.newIndex(t, "dev", base)
	// Upload to the base with an upload token.
	d := u.serve(t)
	_, up := credsOf(t, u.get(t, 0, "--json", bed.url+base+"/"))
	mustUpload(t, u.twineUpload(t, base, up, u.wheel(t, "inherited-pkg", "1.0")))

	c, read := credsOf(t, u.get(t, 0, "--json", bed.url+dev+"/+simple/"))
	if !strings.Contains(strings.Join(c.Caveats, " "), "indexes="+base+","+dev) {
		t.Errorf("read token caveats %q lack the base", c.Caveats)
	}
	// pip sends the token with every request, also for the file that
	// lives under the base's URL: the server checks the token there too.
	target := filepath.Join(u.home, "target")
	index := strings.Replace(bed.url, "http://", "http://"+u.name+":"+read.Reveal()+"@", 1) + dev + "/+simple/"
	r := u.runEnv(t, []string{"PIP_INDEX_URL=" + index}, "", bed.py("client", "python"), "-m", "pip", "install",
		"--disable-pip-version-check", "--no-cache-dir", "--target", target, "inherited-pkg")
	if r.code != 0 {
		t.Fatalf("pip install from %s through its base: %s", dev, r)
	}
	if _, err := os.Stat(filepath.Join(target, "inherited_pkg", "__init__.py")); err != nil {
		t.Errorf("not installed: %v", err)
	}
	// The read token cannot upload.
	mustRefuse(t, u.twineUpload(t, dev, read, u.wheel(t, "inherited-pkg", "2.0")), "no permission to submit")
	d.stop(t)
	checkNoSecrets(t, d, u, root, read, up)
}

// TestDaemonRotation: a new token written over the token file, or swapped in
// by a symlink swap as Kubernetes does, is used within 2 s, no restart.
func TestDaemonRotation(t *testing.T) {
	u, first := setupDaemonUser(t)
	d := u.serve(t)
	tokenID := func() string {
		st, err := d.client.Status(context.Background())
		if err != nil || len(st.Servers) != 1 {
			return ""
		}
		return st.Servers[0].TokenID
	}
	if tokenID() != first.ID() {
		t.Fatalf("daemon serves %q, want %q", tokenID(), first.ID())
	}
	within := func(want, how string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for tokenID() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %q after 2 s, want %q", how, tokenID(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// 'token login' in another shell renames a new file over the old.
	second := filepath.Join(u.home, "second.token")
	u.credd(t, 0, "token", "create", "-o", second)
	secondTok := parseToken(t, readFile(t, second))
	u.credd(t, 0, "token", "login", "-f", second, "--name", "local")
	within(secondTok.ID(), "rename over")

	// A symlink swap: token file -> ..data/token, ..data -> a new directory.
	stored := filepath.Join(u.home, ".local", "state", "devpi-credd", "tokens", "local.token")
	dir := filepath.Dir(stored)
	third := parseToken(t, u.credd(t, 0, "token", "create").stdout)
	fourth := parseToken(t, u.credd(t, 0, "token", "create").stdout)
	put := func(sub string, tok *token.Token) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "local.token"), []byte(tok.Reveal()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put("..2026_a", third)
	must(t, os.Symlink("..2026_a", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "local.token"), filepath.Join(dir, "local.tmp")))
	must(t, os.Rename(filepath.Join(dir, "local.tmp"), stored))
	within(third.ID(), "token file replaced by a symlink")
	put("..2026_b", fourth)
	must(t, os.Symlink("..2026_b", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	within(fourth.ID(), "..data symlink swap")

	// The new token is the one minted from.
	c, _ := credsOf(t, u.get(t, 0, "--json", bed.url))
	if c.TokenID != fourth.ID() {
		t.Errorf("minted from %s, want %s", c.TokenID, fourth.ID())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDaemonOtherUIDRefused: a client under another uid gets no token. By
// default the socket's modes keep it out; with allow_uids the socket is
// reachable and the daemon's peer check decides, refusing uids not listed.
func TestDaemonOtherUIDRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching to another uid needs root; CI runs as root")
	}
	const nobody = 65534
	u, _ := setupDaemonUser(t)
	// Let uid 65534 walk to the socket and run the binary; the socket's own
	// directory and modes are the daemon's business.
	must(t, os.MkdirAll(u.runtimeDir(), 0o700))
	for _, p := range []string{filepath.Dir(u.home), u.home, u.runtimeDir(), filepath.Dir(bed.bin), filepath.Dir(filepath.Dir(bed.bin))} {
		must(t, os.Chmod(p, 0o711))
	}
	otherHome := t.TempDir()
	must(t, os.Chmod(otherHome, 0o777))
	asNobody := func(socket string) (string, string, error) {
		cmd := exec.Command(bed.bin, "get", "--socket", socket, bed.url)
		cmd.Env = []string{"HOME=" + otherHome, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	config := filepath.Join(u.home, ".config", "devpi-credd", "config.toml")
	shared := filepath.Join(u.home, "shared", "socket")
	setAllow := func(uid int) {
		text := readFile(t, config)
		if i := strings.Index(text, "allow_uids"); i >= 0 {
			text = text[strings.Index(text[i:], "\n")+i+1:]
			text = text[strings.Index(text, "\n")+1:] // and shared_socket
		}
		must(t, os.WriteFile(config, []byte(fmt.Sprintf("allow_uids = [%d]\nshared_socket = %q\n%s", uid, shared, text)), 0o600))
	}

	// Default: the socket is 0600 in a 0700 directory.
	d := u.serve(t)
	out, errOut, err := asNobody(d.socket)
	if err == nil || out != "" || !strings.Contains(errOut, "no permission to use the daemon's socket") {
		t.Errorf("default modes: uid %d got %q, %q, %v", nobody, out, errOut, err)
	}
	d.stop(t)

	// allow_uids names someone else: the shared socket is reachable, but
	// the peer check refuses; the owner's own socket stays out of reach.
	setAllow(4242)
	d = u.serve(t)
	if out, errOut, err = asNobody(d.socket); err == nil || !strings.Contains(errOut, "no permission to use the daemon's socket") {
		t.Errorf("the owner's socket with allow_uids set: uid %d got %q, %q, %v", nobody, out, errOut, err)
	}
	out, errOut, err = asNobody(shared)
	if err == nil || out != "" || !strings.Contains(errOut, "uid 65534 may not use this daemon") {
		t.Errorf("not allowed: uid %d got %q, %q, %v", nobody, out, errOut, err)
	}
	d.stop(t)
	audit := readFile(t, filepath.Join(u.home, ".local", "state", "devpi-credd", "audit.log"))
	if !strings.Contains(audit, `"event":"refuse","peer":{"uid":65534`) {
		t.Errorf("no refusal of uid %d in the audit log:\n%s", nobody, audit)
	}

	// allow_uids names it: it gets a token, and the audit log says who.
	setAllow(nobody)
	d = u.serve(t)
	out, errOut, err = asNobody(shared)
	if err != nil || !strings.HasPrefix(out, "devpi-") {
		t.Errorf("allowed: uid %d got %q, %q, %v", nobody, out, errOut, err)
	}
	d.stop(t)
	audit = readFile(t, filepath.Join(u.home, ".local", "state", "devpi-credd", "audit.log"))
	if !strings.Contains(audit, `"event":"mint","peer":{"uid":65534`) {
		t.Errorf("no mint for uid %d in the audit log", nobody)
	}
}

// TestRevoke: one command deletes the long-lived token on the server and
// here; tokens minted from it die at once, and the running daemon stops
// minting for that server.
func TestRevoke(t *testing.T) {
	u, root := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	d := u.serve(t)
	_, tok := credsOf(t, u.get(t, 0, "--json", bed.url+dev+"/"))
	mustUpload(t, u.twineUpload(t, dev, tok, u.wheel(t, "rev-pkg", "1.0")))

	r := u.runEnv(t, u.daemonEnv(), "", bed.bin, "revoke")
	if r.code != 1 || !strings.Contains(r.stderr, "pass --yes to confirm") {
		t.Fatalf("revoke without a terminal or --yes: %s", r)
	}
	r = u.runEnv(t, u.daemonEnv(), "", bed.bin, "revoke", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "token "+root.ID()+" deleted") {
		t.Fatalf("revoke: %s", r)
	}
	mustRefuse(t, u.twineUpload(t, dev, tok, u.wheel(t, "rev-pkg", "1.1")), "The token id "+root.ID()+" doesn't exist")
	deadline := time.Now().Add(2 * time.Second)
	for {
		r = u.runEnv(t, u.daemonEnv(), "", bed.bin, "get", bed.url+dev+"/")
		if r.code == 1 && strings.Contains(r.stderr, "no usable token") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon still mints after revoke: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop(t)
	checkNoSecrets(t, d, u, root, tok)
}

// TestDaemonKill9: a daemon killed with SIGKILL leaves its socket behind;
// the next one takes it over (the kernel released the lock), and serves.
func TestDaemonKill9(t *testing.T) {
	u, root := setupDaemonUser(t)
	d := u.serve(t)
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d.done = nil
	if _, err := os.Lstat(d.socket); err != nil {
		t.Fatalf("expected the killed daemon's socket to remain: %v", err)
	}
	d2 := u.serve(t)
	c, _ := credsOf(t, u.get(t, 0, "--json", bed.url))
	if c.TokenID != root.ID() {
		t.Errorf("after kill -9 and restart: %+v", c)
	}
	d2.stop(t)
}

// TestSocketActivation: started by its socket, as systemd starts it from
// devpi-credd.socket: systemd-socket-activate listens on the socket the
// config names and starts devpi-credd serve on the first connection,
// passing the listening socket (LISTEN_FDS); the first get is answered.
// A socket others could connect to (SocketMode=0666) is refused, in one
// line, and nothing is served on it.
func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate is missing (make deps installs the systemd package)")
	}
	u, root := setupDaemonUser(t)
	sock := filepath.Join(u.runtimeDir(), "devpi-credd", "socket")
	must(t, os.MkdirAll(filepath.Dir(sock), 0o700))
	// activate listens on sock, gives it mode (systemd-socket-activate
	// leaves it to the umask, where systemd applies SocketMode=), and
	// returns the logs of the daemon it starts and its end.
	activate := func(mode os.FileMode) (*lockedBuffer, func() error) {
		_ = os.Remove(sock)
		logs := &lockedBuffer{}
		cmd := exec.Command(sa, "-l", sock, bed.bin, "serve", "--log-format", "json")
		cmd.Env = u.env(u.daemonEnv()...)
		cmd.Stdout, cmd.Stderr = logs, logs
		must(t, cmd.Start())
		exited := make(chan struct{})
		var werr error
		go func() { werr = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Error("the activated daemon ignored SIGTERM")
			}
		})
		waitUntil(t, 30*time.Second, "systemd-socket-activate listening", func() bool {
			st, err := os.Stat(sock)
			return err == nil && st.Mode()&os.ModeSocket != 0
		})
		must(t, os.Chmod(sock, mode))
		if strings.Contains(logs.String(), "serving") {
			t.Fatalf("the daemon started before the first connection:\n%s", logs)
		}
		return logs, func() error {
			select {
			case <-exited:
				return werr
			case <-time.After(30 * time.Second):
				t.Fatalf("the activated daemon did not end:\n%s", logs)
				return nil
			}
		}
	}

	logs, wait := activate(0o666)
	u.get(t, 1, "--json", bed.url)
	if err := wait(); err == nil || !strings.Contains(logs.String(), "refusing the socket systemd passed") || !strings.Contains(logs.String(), "mode 0666") {
		t.Errorf("a 0666 socket: %v\n%s", err, logs)
	}

	logs, _ = activate(0o600)
	c, _ := credsOf(t, u.get(t, 0, "--json", bed.url))
	if c.TokenID != root.ID() {
		t.Errorf("the first get: %+v", c)
	}
	if !strings.Contains(logs.String(), "socket activation") {
		t.Errorf("the daemon did not serve on the socket it was passed:\n%s", logs)
	}
}

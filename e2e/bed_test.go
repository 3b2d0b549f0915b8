//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/testissuer"
)

// bed is the test bed shared by every test in the package: one
// devpi-server, started in TestMain and stopped when the tests end, also
// when they fail.
var bed *testBed

type testBed struct {
	venv string // holds server/ and client/ virtualenvs
	bin  string // devpi-credd, built from this tree
	// attacker plays another local user (e2e/attacker), in the same
	// directory as bin.
	attacker string
	dir      string
	url      string // root URL with a trailing slash
	rootPW   string // root's session secret
	server   *exec.Cmd
	exited   chan error
	// locked is nginx in front of devpi-server with devpi-lockdown: every
	// request needs credentials, and a read without them gets a 401.
	locked string
	// lockedTLS is the same nginx over https (uv asks for PyPI's
	// trusted-publishing paths over https only); its CA's certificate is
	// in nginxCA.
	lockedTLS string
	nginxCA   []byte
	// exchangePort is where nginx sends /_/oidc/: a test's daemon runs
	// its trusted-publishing exchange there.
	exchangePort int
	nginx        *exec.Cmd
	nginxExited  chan error
	logPath      string
	mkwheel      string
	users        atomic.Int64

	// worm plays a worm of the developer's uid (e2e/worm).
	worm string
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	venv := os.Getenv("DEVPI_CREDD_VENV")
	if venv == "" {
		fmt.Fprintln(os.Stderr, "e2e: DEVPI_CREDD_VENV is not set; run the e2e tests with 'make e2e', which builds the virtualenvs")
		return 1
	}
	dir, err := os.MkdirTemp("", "devpi-credd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	b := &testBed{venv: venv, dir: dir, bin: filepath.Join(dir, "bin", "devpi-credd"), attacker: filepath.Join(dir, "bin", "attacker"), worm: filepath.Join(dir, "bin", "worm")}
	if b.mkwheel, err = filepath.Abs("mkwheel.py"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := b.build(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building devpi-credd:", err)
		return 1
	}
	if err := b.startServer(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting devpi-server:", err)
		b.dumpLog()
		b.stopServer()
		return 1
	}
	defer b.stopServer()
	if err := b.startNginx(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting nginx:", err)
		b.dumpFile(filepath.Join(b.dir, "nginx", "error.log"))
		b.stopNginx()
		return 1
	}
	defer b.stopNginx()
	bed = b
	code := m.Run()
	if code != 0 {
		b.dumpLog()
	}
	return code
}

func (b *testBed) build() error {
	lean := filepath.Join(filepath.Dir(b.bin), "devpi-credd-keyring")
	for out, pkg := range map[string]string{b.bin: "../cmd/devpi-credd", lean: "../cmd/devpi-credd-keyring", b.attacker: "./attacker", b.worm: "./worm"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return err
		}
	}
	return nil
}

func (b *testBed) py(venv, name string) string { return filepath.Join(b.venv, venv, "bin", name) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *testBed) startServer() error {
	serverdir := filepath.Join(b.dir, "server")
	init := exec.Command(b.py("server", "devpi-init"), "--serverdir", serverdir, "--no-root-pypi")
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("devpi-init: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.url = fmt.Sprintf("http://127.0.0.1:%d/", port)
	b.logPath = filepath.Join(b.dir, "devpi-server.log")
	logf, err := os.Create(b.logPath)
	if err != nil {
		return err
	}
	// The server must die with the test binary, even on kill -9: its own
	// process group for a clean stop, and a parent-death signal.
	runtime.LockOSThread()
	b.server = exec.Command(b.py("server", "devpi-server"), "--serverdir", serverdir,
		"--host", "127.0.0.1", "--port", fmt.Sprint(port))
	b.server.Stdout, b.server.Stderr = logf, logf
	b.server.SysProcAttr = serverProcAttr()
	if err := b.server.Start(); err != nil {
		return err
	}
	b.exited = make(chan error, 1)
	go func() { b.exited <- b.server.Wait() }()
	if err := waitReady(b.url+"+api", b.exited, 2*time.Minute); err != nil {
		return err
	}
	// Root's password is empty after devpi-init.
	var res struct {
		Result struct {
			Password string `json:"password"`
		} `json:"result"`
	}
	if err := b.api("POST", "+login", "", map[string]string{"user": "root", "password": ""}, &res); err != nil {
		return fmt.Errorf("logging in as root: %w", err)
	}
	b.rootPW = res.Result.Password
	return nil
}

// waitReady polls until url answers 200, the process exits, or the deadline
// passes: readiness, not a guess at how long start-up takes.
func waitReady(url string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited during start-up: %v", err)
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
}

func (b *testBed) stopServer() {
	if b.server == nil || b.server.Process == nil {
		return
	}
	pgid := b.server.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-b.exited
	}
}

// nginxBin is nginx's path: on PATH, or in /usr/sbin, which a user's PATH
// may lack.
func nginxBin() (string, error) {
	bin, err := exec.LookPath("nginx")
	if err == nil {
		return bin, nil
	}
	if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
		return "", fmt.Errorf("nginx is not installed (make deps installs it)")
	}
	return "/usr/sbin/nginx", nil
}

func (b *testBed) startNginx() error {
	bin, err := nginxBin()
	if err != nil {
		return err
	}
	dir := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	user := ""
	if os.Getuid() == 0 {
		// Workers must reach the private temp directories.
		user = "user root;"
	}
	// e2e/nginx.conf.in is shared with make demo.
	tmpl, err := os.ReadFile("nginx.conf.in")
	if err != nil {
		return err
	}
	if b.exchangePort, err = freePort(); err != nil {
		return err
	}
	tlsPort, err := freePort()
	if err != nil {
		return err
	}
	ca, err := testissuer.NewCA()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Leaf()
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	b.nginxCA = ca.CertPEM
	tokenUser, err := filepath.Abs(filepath.Join("..", "packaging", "nginx", "devpi-credd-token-user.conf"))
	if err != nil {
		return err
	}
	conf := strings.NewReplacer("@USER@", user, "@DIR@", dir, "@PORT@", fmt.Sprint(port),
		"@UPSTREAM@", strings.TrimSuffix(b.url, "/"), "@EXCHANGE@", fmt.Sprintf("127.0.0.1:%d", b.exchangePort),
		"@TOKEN_USER@", tokenUser,
		"@TLS@", fmt.Sprintf("listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s;", tlsPort, certFile, keyFile),
	).Replace(string(tmpl))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	b.locked = fmt.Sprintf("http://127.0.0.1:%d/", port)
	b.lockedTLS = fmt.Sprintf("https://127.0.0.1:%d/", tlsPort)
	b.nginx = exec.Command(bin, "-c", confPath, "-p", dir)
	b.nginx.Stdout, b.nginx.Stderr = os.Stderr, os.Stderr
	b.nginx.SysProcAttr = serverProcAttr()
	if err := b.nginx.Start(); err != nil {
		return err
	}
	b.nginxExited = make(chan error, 1)
	go func() { b.nginxExited <- b.nginx.Wait() }()
	// /+api is always open under devpi-lockdown: ready when it answers.
	return waitReady(b.locked+"+api", b.nginxExited, time.Minute)
}

func (b *testBed) stopNginx() {
	if b.nginx == nil || b.nginx.Process == nil {
		return
	}
	_ = syscall.Kill(-b.nginx.Process.Pid, syscall.SIGQUIT)
	select {
	case <-b.nginxExited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-b.nginx.Process.Pid, syscall.SIGKILL)
		<-b.nginxExited
	}
}

func (b *testBed) dumpFile(path string) {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	fmt.Fprintf(os.Stderr, "--- last of %s ---\n%s\n", path, data)
}

func (b *testBed) dumpLog() {
	if b.logPath == "" {
		return
	}
	data, _ := os.ReadFile(b.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	fmt.Fprintf(os.Stderr, "--- last of devpi-server's log ---\n%s\n", data)
}

// api calls devpi-server directly, as root when auth is "" and the root
// session exists, for setting up users and indexes.
func (b *testBed) api(method, path, auth string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	if auth == "" && b.rootPW != "" {
		auth = "root:" + b.rootPW
	}
	if auth != "" && auth != "-" {
		req.Header.Set("X-Devpi-Auth", base64.StdEncoding.EncodeToString([]byte(auth)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// user is a devpi user made for one test, with its own HOME in which
// devpi-credd and devpi-client keep their state.
type user struct {
	name, password string
	home           string
}

// newUser creates a fresh user; names contain dashes on purpose, since token
// identifiers are split at the last one.
func newUser(t *testing.T) *user {
	t.Helper()
	n := bed.users.Add(1)
	u := &user{name: fmt.Sprintf("e2e-user-%d", n), password: fmt.Sprintf("pw-%d-%d", n, time.Now().UnixNano()), home: t.TempDir()}
	if err := bed.api("PUT", u.name, "", map[string]string{"password": u.password, "email": u.name + "@example.invalid"}, nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// newIndex creates USER/NAME with the given bases, as that user.
func (u *user) newIndex(t *testing.T, name string, bases ...string) string {
	t.Helper()
	var res struct {
		Result struct {
			Password string `json:"password"`
		} `json:"result"`
	}
	if err := bed.api("POST", "+login", "-", map[string]string{"user": u.name, "password": u.password}, &res); err != nil {
		t.Fatal(err)
	}
	if bases == nil {
		bases = []string{}
	}
	body := map[string]any{"type": "stage", "bases": bases, "volatile": true}
	if err := bed.api("PUT", u.name+"/"+name, u.name+":"+res.Result.Password, body, nil); err != nil {
		t.Fatal(err)
	}
	return u.name + "/" + name
}

// env is the environment of every program a test runs: a private HOME, no
// keyring that could answer, and nothing from the developer's own setup.
// extra overrides; "KEY=" with nothing after it removes KEY.
func (u *user) env(extra ...string) []string {
	base := []string{
		"HOME=" + u.home,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"DEVPI_CLIENTDIR=" + filepath.Join(u.home, ".devpi", "client"),
		"PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring",
		"TZ=UTC",
		"LANG=C.UTF-8",
	}
	var out []string
	for _, kv := range append(base, extra...) {
		key, value, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(o string) bool { return strings.HasPrefix(o, key+"=") })
		if value != "" {
			out = append(out, kv)
		}
	}
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout ---\n%s--- stderr ---\n%s", r.code, r.stdout, r.stderr)
}

// run runs a program in u's environment with stdin, bounded in time.
func (u *user) run(t *testing.T, stdin string, prog string, args ...string) result {
	t.Helper()
	return u.runEnv(t, nil, stdin, prog, args...)
}

// runEnv is run with extra environment variables.
func (u *user) runEnv(t *testing.T, extra []string, stdin string, prog string, args ...string) result {
	t.Helper()
	return runCmd(t, func(cmd *exec.Cmd) {
		cmd.Env = u.env(extra...)
		cmd.Dir = u.home
		cmd.Stdin = strings.NewReader(stdin)
	}, prog, args...)
}

// runCmd runs prog, set up by setup, bounded in time, and returns what it
// printed and its exit code.
func runCmd(t *testing.T, setup func(*exec.Cmd), prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	setup(cmd)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", prog, err)
	}
	return r
}

// credd runs devpi-credd and expects exit code want.
func (u *user) credd(t *testing.T, want int, args ...string) result {
	t.Helper()
	return u.expect(t, want, u.run(t, "", bed.bin, args...), "devpi-credd", args)
}

func (u *user) creddStdin(t *testing.T, want int, stdin string, args ...string) result {
	t.Helper()
	return u.expect(t, want, u.run(t, stdin, bed.bin, args...), "devpi-credd", args)
}

// devpi runs devpi-client.
func (u *user) devpi(t *testing.T, want int, args ...string) result {
	t.Helper()
	return u.expect(t, want, u.run(t, "", bed.py("client", "devpi"), args...), "devpi", args)
}

func (u *user) expect(t *testing.T, want int, r result, prog string, args []string) result {
	t.Helper()
	if r.code != want {
		t.Fatalf("%s %s: want exit %d, got %s", prog, strings.Join(args, " "), want, r)
	}
	return r
}

// login logs u in with devpi-credd's own session.
func (u *user) login(t *testing.T) {
	t.Helper()
	r := u.creddStdin(t, 0, u.password+"\n", "login", "--url", bed.url, u.name, "--password-stdin")
	if !strings.Contains(r.stdout, "logged in '"+u.name+"'") {
		t.Fatalf("login: %s", r)
	}
}

// rootUser is devpi's root, with a HOME of its own.
func rootUser(t *testing.T) *user {
	return &user{name: "root", password: "", home: t.TempDir()}
}

// writeFile writes a private file in u's HOME and returns its path.
func (u *user) writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(u.home, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wheel builds a tiny wheel for project at version in u's HOME.
func (u *user) wheel(t *testing.T, project, version string) string {
	t.Helper()
	r := u.run(t, "", bed.py("client", "python"), bed.mkwheel, project, version, filepath.Join(u.home, "dist"))
	if r.code != 0 {
		t.Fatalf("mkwheel: %s", r)
	}
	return strings.TrimSpace(r.stdout)
}

// waitUntil polls cond until it holds, or fails the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/token"
)

// ciJob is a user with a long-lived token in a file, as a CI system would
// hand it to a job, and an index with a package in it, behind nginx.
type ciJob struct {
	u         *user
	dev       string
	tokenFile string
	root      *token.Token
	pkg       string
}

func newCIJob(t *testing.T) *ciJob {
	t.Helper()
	u := newUser(t)
	u.login(t)
	j := &ciJob{u: u, dev: u.newIndex(t, "dev"), tokenFile: filepath.Join(u.home, "ci.token"), pkg: "ci-pkg"}
	u.credd(t, 0, "token", "create", "-o", j.tokenFile)
	j.root = parseToken(t, readFile(t, j.tokenFile))
	// Nothing else on the machine: no devpi-credd session, no daemon.
	u.credd(t, 0, "logout")
	return j
}

// exec runs 'devpi-credd exec' with the job's flags around argv, in an
// environment with a PATH to the pinned tools and no keyring of its own.
func (j *ciJob) exec(t *testing.T, flags []string, argv ...string) result {
	t.Helper()
	args := append(append([]string{"exec", "--url", bed.locked, "--token-file", j.tokenFile}, flags...), "--")
	env := []string{
		"PATH=" + filepath.Dir(bed.py("client", "python")) + ":/usr/local/bin:/usr/bin:/bin",
		"PYTHON_KEYRING_BACKEND=",
		"PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_CACHE_DIR=1", "UV_NO_CACHE=1", "COLUMNS=1000", "NO_COLOR=1",
	}
	return j.u.runEnv(t, env, "", bed.bin, append(args, argv...)...)
}

func TestExecTwinePipUvDevpi(t *testing.T) {
	j := newCIJob(t)
	upload := bed.locked + j.dev + "/"
	whl := j.u.wheel(t, j.pkg, "1.0")
	r := j.exec(t, []string{"-i", j.dev}, "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", upload, whl)
	if r.code != 0 {
		t.Fatalf("exec twine upload: %s", r)
	}
	// devpi-client's session, and twine's one upload token.
	if !strings.Contains(r.stderr, "devpi-credd: the job got 2 short-lived tokens") {
		t.Errorf("summary line: %s", r)
	}
	target := filepath.Join(j.u.home, "t")
	r = j.exec(t, []string{"-i", j.dev}, "python", "-m", "pip", "install", "--index-url", bed.locked+j.dev+"/+simple/", "--target", target, j.pkg)
	if r.code != 0 {
		t.Fatalf("exec pip install: %s", r)
	}
	if _, err := os.Stat(filepath.Join(target, "ci_pkg", "__init__.py")); err != nil {
		t.Errorf("not installed: %v", err)
	}
	r = j.exec(t, []string{"-i", j.dev}, "uv", "publish", "--publish-url", upload, "--username", j.root.User(), j.u.wheel(t, j.pkg, "2.0"))
	if r.code != 0 {
		t.Fatalf("exec uv publish: %s", r)
	}
	r = j.exec(t, nil, "sh", "-c", `devpi use "$1" && devpi upload "$2" && devpi list ci-pkg`, "sh", bed.locked+j.dev, j.u.wheel(t, j.pkg, "3.0"))
	if r.code != 0 || !strings.Contains(r.stdout, "ci_pkg-3.0-py3-none-any.whl") {
		t.Fatalf("exec devpi upload: %s", r)
	}
	// -i binds the job: an upload elsewhere is refused.
	other := j.u.newIndex(t, "other")
	r = j.exec(t, []string{"-i", j.dev}, "twine", "upload", "--non-interactive", "--repository-url", bed.locked+other+"/", j.u.wheel(t, j.pkg, "4.0"))
	if r.code == 0 || !strings.Contains(r.stderr, "index "+other+" is outside what the root token or config for job allows") {
		t.Errorf("exec -i %s, upload to %s: want the daemon's refusal, got %s", j.dev, other, r)
	}
}

// TestExecEnvironment: the child sees no long-lived token, the socket
// directory is gone afterwards, and the exit code is the child's.
func TestExecEnvironment(t *testing.T) {
	j := newCIJob(t)
	// The child dumps its environment and tries its parent's. Root may read
	// any process's memory, so as root the job runs as uid 65534.
	var out, errb bytes.Buffer
	cmd := exec.Command(bed.bin, "exec", "--url", bed.locked, "--", "sh", "-c", `env; cat /proc/$PPID/environ | tr '\0' '\n'; exit 7`)
	home := t.TempDir()
	cmd.Env = []string{"DEVPI_CREDD_TOKEN=" + j.root.Reveal(), "PATH=/usr/bin:/bin", "HOME=" + home, "TMPDIR=" + home}
	cmd.Dir = home
	cmd.Stdout, cmd.Stderr = &out, &errb
	if os.Getuid() == 0 {
		for _, p := range []string{filepath.Dir(bed.bin), filepath.Dir(filepath.Dir(bed.bin))} {
			must(t, os.Chmod(p, 0o711))
		}
		must(t, os.Chmod(filepath.Dir(home), 0o711))
		must(t, os.Chown(home, 65534, 65534))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	if r.code != 7 {
		t.Fatalf("exit code %d, want the child's 7: %s", r.code, r)
	}
	noSecret(t, result{stdout: r.stdout}, j.root)
	if strings.Contains(r.stdout, "DEVPI_CREDD_TOKEN=") {
		t.Error("the child saw DEVPI_CREDD_TOKEN")
	}
	if !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("the child could read exec's /proc/PID/environ: %s", r.stderr)
	}
	var socket string
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "DEVPI_CREDD_SOCKET="); ok {
			socket = v
		}
	}
	if socket == "" {
		t.Fatalf("no DEVPI_CREDD_SOCKET in the child's environment:\n%s", r.stdout)
	}
	// .../devpi-credd-exec-N/run/socket: the whole directory is gone.
	if _, err := os.Stat(filepath.Dir(filepath.Dir(socket))); !os.IsNotExist(err) {
		t.Errorf("the job's directory is left: %v", err)
	}
	for _, want := range []string{"PIP_KEYRING_PROVIDER=subprocess", "UV_KEYRING_PROVIDER=subprocess", "DEVPI_CLIENTDIR=", "PYTHONPATH="} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the child's environment lacks %s", want)
		}
	}
}

// TestExecTokenDiesWithTheJob: a token captured inside the job is refused
// by the server once --ttl has passed.
func TestExecTokenDiesWithTheJob(t *testing.T) {
	j := newCIJob(t)
	captured := filepath.Join(j.u.home, "captured")
	start := time.Now()
	r := j.exec(t, []string{"--ttl", "4s", "-i", j.dev}, "sh", "-c", `devpi-credd get "$1" > "$2"`, "sh", bed.locked+j.dev+"/", captured)
	if r.code != 0 {
		t.Fatalf("exec: %s", r)
	}
	tok := parseToken(t, readFile(t, captured))
	if exp := tok.Scope().Expires; exp == nil || exp.After(start.Add(5*time.Second)) {
		t.Fatalf("captured token expires %v, want by start+4s", exp)
	}
	mustUpload(t, j.u.twineUpload(t, j.dev, tok, j.u.wheel(t, j.pkg, "1.0")))
	for time.Now().Before(tok.Scope().Expires.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	mustRefuse(t, j.u.twineUpload(t, j.dev, tok, j.u.wheel(t, j.pkg, "1.1")), "Token expired at")
}

// TestExecSIGTERM: SIGTERM to exec reaches the child, and exec still
// cleans up.
func TestExecSIGTERM(t *testing.T) {
	j := newCIJob(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bed.bin, "exec", "--url", bed.locked, "--token-file", j.tokenFile, "--",
		"sh", "-c", `trap 'echo got-term; exit 42' TERM; echo "ready $DEVPI_CREDD_SOCKET"; while :; do sleep 0.05; done`)
	cmd.Env = j.u.env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("child not ready: %q %v %s", line, err, errb.String())
	}
	socket := strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(rd)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("exec exited with %v, want the child's 42; stderr %s", err, errb.String())
	}
	if !strings.Contains(string(rest), "got-term") {
		t.Errorf("the child did not get SIGTERM: %q", rest)
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(socket))); !os.IsNotExist(err) {
		t.Errorf("the job's directory is left after SIGTERM: %v", err)
	}
}

// TestEnvCommand: env prints variables with one upload token for the index.
func TestEnvCommand(t *testing.T) {
	j := newCIJob(t)
	r := j.u.runEnv(t, []string{"DEVPI_CREDD_TOKEN_FILE=" + j.tokenFile}, "", bed.bin, "env", "--url", bed.locked, "-i", j.dev, "--ttl", "10m")
	if r.code != 0 {
		t.Fatalf("env: %s", r)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		vars[k] = strings.Trim(v, "'")
	}
	upload := bed.locked + j.dev + "/"
	if vars["TWINE_REPOSITORY_URL"] != upload || vars["UV_PUBLISH_URL"] != upload || vars["TWINE_USERNAME"] != j.root.User() {
		t.Fatalf("env printed %q", vars)
	}
	tok := parseToken(t, vars["TWINE_PASSWORD"])
	if !tok.Equal(parseToken(t, vars["UV_PUBLISH_PASSWORD"])) || tok.Equal(j.root) {
		t.Fatal("env's token is not one derived upload token")
	}
	mustUpload(t, j.u.twineUpload(t, j.dev, tok, j.u.wheel(t, j.pkg, "1.0")))
	// GitHub: appended to $GITHUB_ENV, the token masked.
	ghEnv := filepath.Join(j.u.home, "github_env")
	r = j.u.runEnv(t, []string{"GITHUB_ENV=" + ghEnv}, "", bed.bin, "env", "--url", bed.locked, "--token-file", j.tokenFile, "-i", j.dev, "--format", "github")
	masked, _ := strings.CutPrefix(strings.TrimSpace(r.stdout), "::add-mask::")
	if r.code != 0 || !strings.HasPrefix(masked, "devpi-") || !strings.Contains(readFile(t, ghEnv), "TWINE_PASSWORD="+masked+"\n") {
		t.Errorf("env --format github: the masked value is not the token written: %s", r)
	}
	gh := parseToken(t, masked)
	if exp := gh.Scope().Expires; exp == nil || time.Until(*exp) > 16*time.Minute || !slices.Contains(gh.Caveats(), "indexes="+j.dev) {
		t.Errorf("env's token: caveats %q", gh.Caveats())
	}
}

// TestExecSignalBeforeStart: a signal before the command starts ends the
// job, and its directory is still removed.
func TestExecSignalBeforeStart(t *testing.T) {
	j := newCIJob(t)
	tmp := t.TempDir()
	for i := 0; i < 5; i++ {
		cmd := exec.Command(bed.bin, "exec", "--url", bed.locked, "--token-file", j.tokenFile, "--", "sleep", "5")
		cmd.Env = append(j.u.env(), "TMPDIR="+tmp)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 3 * time.Millisecond) // while it sets up
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	// Whether each got as far as the child or not, nothing is left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(tmp)
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v", entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

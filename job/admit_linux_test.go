package job

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/peercred"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// The job's daemon lets in its child's tree, nobody else: not the job's
// parent, not before or after the child runs.
func TestAdmitPeerChildOnly(t *testing.T) {
	c := exec.Command("sh", "-c", "cat; true")
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); _ = c.Wait() }()
	j := &Job{}
	start := func(pid int) uint64 { return peercred.StartTime("/proc", pid) }
	child := daemon.Peer{PID: c.Process.Pid, UID: os.Getuid(), Known: true, Start: start(c.Process.Pid)}
	if err := j.admitPeer(child); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("before Run: %v", err)
	}
	j.child.Store(int64(c.Process.Pid))
	if err := j.admitPeer(child); err != nil {
		t.Errorf("the child: %v", err)
	}
	if !descendsFrom(c.Process.Pid, start(c.Process.Pid), os.Getpid()) {
		t.Error("the child does not descend from this process")
	}
	for name, p := range map[string]daemon.Peer{
		"the job's parent": {PID: os.Getppid(), UID: os.Getuid(), Known: true, Start: start(os.Getppid())},
		"the job itself":   {PID: os.Getpid(), UID: os.Getuid(), Known: true, Start: start(os.Getpid())},
		"unknown":          {PID: -1, UID: -1},
		// A worm's process connected and ended, and the child took its
		// pid: the connector's start time is not the child's.
		"a connector whose pid the child took": {PID: c.Process.Pid, UID: os.Getuid(), Known: true, Start: start(c.Process.Pid) - 1},
		"a connector that ended":               {PID: c.Process.Pid, UID: os.Getuid(), Known: true},
	} {
		if err := j.admitPeer(p); err == nil {
			t.Errorf("%s was let in", name)
		}
	}
	if err := j.admitPeer(daemon.Peer{PID: os.Getppid(), Known: true}); err == nil || !strings.Contains(err.Error(), "not pid") {
		t.Errorf("message: %v", err)
	}
}

// A job with ChildOnly, for real: its child's keyring helper (a grandchild
// of the job, through sh) gets a token; this process and a process beside
// the child, which know the socket, get 403 with the reason.
func TestChildOnlyJob(t *testing.T) {
	root, err := token.New(testKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := devpi.ParseRoot("http://h/")
	t.Setenv("TMPDIR", t.TempDir())
	j, err := Start(context.Background(), Spec{Server: config.Server{Name: "job", URL: u}, Root: root, TTL: time.Minute},
		Options{ForChild: true, ChildOnly: true, Environ: []string{"PATH=/usr/bin:/bin", testKeyringEnv + "=1"},
			Getenv: func(k string) string { return map[string]string{"PATH": "/usr/bin:/bin"}[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	socket := env(j, "DEVPI_CREDD_SOCKET")
	ask := func() error {
		_, err := (&helper.Client{Socket: socket}).Credentials(context.Background(), localapi.CredentialsRequest{URL: "http://h/alice/dev/"})
		return err
	}
	if err := ask(); !helper.IsCode(err, localapi.CodeForbidden) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("before the child runs: %v", err)
	}
	stdinR, stdinW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	done := make(chan int, 1)
	go func() {
		code, _ := j.Run(context.Background(), []string{"sh", "-c", "keyring get http://h/alice/dev/ alice; cat"}, Stdio{Stdin: stdinR, Stdout: outW, Stderr: os.Stderr}, nil)
		done <- code
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "devpi-") {
		t.Fatalf("the child's lookup: %q %v", line, err)
	}
	if err := ask(); !helper.IsCode(err, localapi.CodeForbidden) || !strings.Contains(err.Error(), "not pid") {
		t.Errorf("this process, while the child runs: %v", err)
	}
	beside := exec.Command(os.Args[0], "get", "http://h/alice/dev/", "alice")
	beside.Env = []string{testKeyringEnv + "=1", "DEVPI_CREDD_SOCKET=" + socket}
	out, err := beside.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "answers only the job's command and its processes") {
		t.Errorf("a process beside the child: %v %q", err, out)
	}
	stdinW.Close()
	if code := <-done; code != 0 {
		t.Errorf("the child exited %d", code)
	}
}

// A ChildOnly job's tokens can upload, and its daemon answers the child's
// processes only; devpi-client's login, though, is a file in the job's
// directory that every process of the user can read. It must not hold a
// session that can upload.
func TestChildOnlyDevpiClientCannotWrite(t *testing.T) {
	root, err := token.New(testKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := devpi.ParseRoot("http://h/")
	t.Setenv("TMPDIR", t.TempDir())
	for _, childOnly := range []bool{false, true} {
		j, err := Start(context.Background(), Spec{Server: config.Server{Name: "job", URL: u}, Root: root, TTL: time.Minute},
			Options{ForChild: true, ChildOnly: childOnly, Environ: []string{"PATH=/usr/bin:/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		auth, ok, err := devpi.StateDir{Dir: env(j, "DEVPI_CLIENTDIR")}.Auth(u.String(), "alice")
		j.Close()
		if err != nil || !ok {
			t.Fatalf("ChildOnly %v: devpi-client's login: %v %v", childOnly, ok, err)
		}
		tok, err := token.Parse(auth.Secret)
		if err != nil {
			t.Fatal(err)
		}
		allowed := tok.Scope().Allowed
		if childOnly && (allowed == nil || slices.Contains(allowed, "upload")) {
			t.Errorf("a ChildOnly job's devpi-client login can upload: %v", tok.Caveats())
		}
		if !childOnly && allowed != nil {
			t.Errorf("a job's devpi-client login is narrowed: %v", tok.Caveats())
		}
	}
}

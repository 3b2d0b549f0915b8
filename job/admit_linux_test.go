package job

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/daemon"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
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
	child := daemon.Peer{PID: c.Process.Pid, UID: os.Getuid(), Known: true}
	if err := j.admitPeer(child); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("before Run: %v", err)
	}
	j.child.Store(int64(c.Process.Pid))
	if err := j.admitPeer(child); err != nil {
		t.Errorf("the child: %v", err)
	}
	if !descendsFrom(c.Process.Pid, os.Getpid()) {
		t.Error("the child does not descend from this process")
	}
	for name, p := range map[string]daemon.Peer{
		"the job's parent": {PID: os.Getppid(), UID: os.Getuid(), Known: true},
		"the job itself":   {PID: os.Getpid(), UID: os.Getuid(), Known: true},
		"unknown":          {PID: -1, UID: -1},
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

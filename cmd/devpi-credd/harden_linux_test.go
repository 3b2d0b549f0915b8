package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A command that holds a long-lived secret a worm wants (the
// authenticator's secret while the person scans it, the sealed store's
// passphrase) runs undumpable: another process of the same user can read
// neither its /proc/PID/mem nor its environ. Real processes: this test
// binary run as devpi-credd, as another uid when the test runs as root
// (root reads everything), against the fake daemon on a real socket.
func TestSecretCommandsAreUndumpable(t *testing.T) {
	dir := t.TempDir()
	uid := os.Getuid()
	var cred *syscall.Credential
	if uid == 0 {
		uid = 65534
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
		// The child must reach the fake daemon's socket and this binary.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	// This binary where the other uid may run it, named as testscript
	// wants it (see TestMain).
	bin := filepath.Join(dir, "devpi-credd")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &fakeDaemon{sealed: true, opened: true}
	socket, stop, err := d.serve(filepath.Join(dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if cred != nil {
		if err := os.Chmod(filepath.Dir(socket), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(socket, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// approval setup, waiting for the first code, holds the new secret
	// and the passphrase.
	c := exec.Command(bin, "approval", "setup", "--passphrase-stdin", "--code-stdin")
	c.Env = []string{"DEVPI_CREDD_SOCKET=" + socket, "HOME=" + dir, "PATH=/usr/bin:/bin"}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); _ = c.Wait() }()
	if _, err := io.WriteString(in, fakePassphrase+"\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("setup never showed the URI: %v", err)
		}
		if strings.HasPrefix(line, "otpauth://") {
			break
		}
	}
	// A dumpable process's /proc/PID/mem is its user's; an undumpable
	// one's is root's, closed to the user's other processes (as environ).
	mem := "/proc/" + strconv.Itoa(c.Process.Pid) + "/mem"
	st, err := os.Stat(mem)
	if err != nil {
		t.Fatal(err)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; owner != 0 {
		t.Errorf("approval setup holds the new secret dumpable: %s belongs to uid %d", mem, owner)
	}
}

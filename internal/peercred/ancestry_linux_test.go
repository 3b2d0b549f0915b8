package peercred

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// stat is a /proc/PID/stat line of pid with command name comm, parent
// ppid and start time start (the 22nd field).
func stat(pid int, comm string, ppid int, start uint64) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10", pid, comm, ppid, pid, pid, start)
}

// A process tree in a /proc of the test's own: command names with spaces
// and parentheses, a loop, a missing entry, and a pid whose start time is
// not the caller's (taken by another process since).
func TestDescendsFrom(t *testing.T) {
	proc := t.TempDir()
	for pid, line := range map[int]string{
		10: stat(10, "tw ine) x", 5, 1010),
		5:  stat(5, "sh", 1, 1005),
		7:  stat(7, "worm", 1, 1007),
		20: stat(20, "a", 21, 1020),
		21: stat(21, "b", 20, 1021),
		30: stat(30, "orphan", 99, 1030),
	} {
		if err := os.MkdirAll(filepath.Join(proc, fmt.Sprint(pid)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, fmt.Sprint(pid), "stat"), []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		pid      int
		start    uint64
		ancestor int
		want     bool
	}{
		{10, 1010, 10, true}, {10, 1010, 5, true}, {5, 1005, 10, false}, {7, 1007, 5, false},
		{20, 1020, 5, false}, {30, 1030, 5, false}, {99, 0, 5, false}, {10, 1010, 1, true},
		// pid 10 is twine's now; the caller that had it before is not.
		{10, 999, 5, false}, {10, 0, 5, false},
	} {
		if got := DescendsFrom(proc, tt.pid, tt.start, tt.ancestor); got != tt.want {
			t.Errorf("DescendsFrom(%d, %d, %d) = %v, want %v", tt.pid, tt.start, tt.ancestor, got, tt.want)
		}
	}
	if got := ParentPID(proc, 10); got != 5 {
		t.Errorf("ParentPID = %d", got)
	}
	if got := Name(proc, 10); got != "tw ine) x" {
		t.Errorf("Name = %q", got)
	}
}

// The connector's start time, for real: a process that connected and
// still runs has its own; one that connected and ended has none, even
// though its connection is still open (held by another process).
func TestStartOf(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A live connector: this process.
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := StartOf(s, os.Getpid()), StartTime("/proc", os.Getpid()); got == 0 || got != want {
		t.Errorf("a live connector's start: %d, want %d", got, want)
	}
	// A connector that ended: a child process connects, hands the
	// connection to this one (SCM_RIGHTS) and exits; its pid is free.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "mine"), os.NewFile(uintptr(pair[1]), "theirs")
	defer mine.Close()
	child := exec.Command(os.Args[0], "-test.run=^TestConnectAndLeave$")
	child.Env = append(os.Environ(), connectEnv+"="+l.Addr().String())
	child.ExtraFiles = []*os.File{theirs}
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("the connecting child: %v %s", err, out)
	}
	theirs.Close()
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(mine.Fd()), buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("no connection from the child: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("no connection from the child: %v", err)
	}
	held := os.NewFile(uintptr(fds[0]), "held")
	defer held.Close()
	s2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	cred, err := Of(s2)
	if err != nil || cred.PID != child.Process.Pid {
		t.Fatalf("the connection's peer: %+v %v, want pid %d", cred, err, child.Process.Pid)
	}
	if got := StartOf(s2, cred.PID); got != 0 {
		t.Errorf("a connector that ended has start %d", got)
	}
}

// connectEnv names the socket TestConnectAndLeave connects to, when the
// test binary runs as TestStartOf's child.
const connectEnv = "PEERCRED_TEST_CONNECT"

// TestConnectAndLeave is TestStartOf's child: it connects, sends the
// connection to its parent on fd 3, and ends.
func TestConnectAndLeave(t *testing.T) {
	path := os.Getenv(connectEnv)
	if path == "" {
		t.Skip("the child of TestStartOf")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
}

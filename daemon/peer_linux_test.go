package daemon

import (
	"os"
	"strings"
	"testing"
)

// The caller's executable for the audit line; where it cannot be read
// (devpi-credd's undumpable commands, read by a daemon of the same uid;
// a kernel thread here, which has none even for root), its name.
func TestExeOf(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := exeOf(os.Getpid()); got != self {
		t.Errorf("exeOf(self) = %q, want %q", got, self)
	}
	comm, err := os.ReadFile("/proc/2/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "kthreadd" {
		t.Skip("no kthreadd at pid 2 (a PID namespace)")
	}
	if got := exeOf(2); got != "kthreadd (name only)" {
		t.Errorf("exeOf(kthreadd) = %q", got)
	}
	if got := exeOf(-5); got != "" {
		t.Errorf("exeOf(-5) = %q", got)
	}
}

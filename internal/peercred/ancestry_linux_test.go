package peercred

import (
	"os"
	"path/filepath"
	"testing"
)

// A process tree in a /proc of the test's own: command names with spaces
// and parentheses, a loop, a missing entry.
func TestDescendsFrom(t *testing.T) {
	proc := t.TempDir()
	for pid, stat := range map[string]string{
		"10": "10 (tw ine) x) S 5 10 10 0 -1",
		"5":  "5 (sh) S 1 5 5 0 -1",
		"7":  "7 (worm) S 1 7 7 0 -1",
		"20": "20 (a) S 21 20 20 0 -1",
		"21": "21 (b) S 20 21 21 0 -1",
		"30": "30 (orphan) S 99 30 30 0 -1",
	} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "stat"), []byte(stat), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		pid, ancestor int
		want          bool
	}{
		{10, 10, true}, {10, 5, true}, {5, 10, false}, {7, 5, false},
		{20, 5, false}, {30, 5, false}, {99, 5, false}, {10, 1, true},
	} {
		if got := DescendsFrom(proc, tt.pid, tt.ancestor); got != tt.want {
			t.Errorf("DescendsFrom(%d, %d) = %v, want %v", tt.pid, tt.ancestor, got, tt.want)
		}
	}
}

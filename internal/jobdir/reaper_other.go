//go:build !unix

package jobdir

import (
	"io"
	"os"
)

// Windows: no reaper; Sweep removes what a killed job left.
type reaper struct{}

func startReaper(string, string) (reaper, error) { return reaper{}, nil }

func (reaper) release() {}

// Reap is not used on Windows.
func Reap(string, io.Reader) int { return 2 }

func ownedByMe(os.FileInfo) bool { return true }

func running(pid int, _ string) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}

func processStart(int) string { return "" }

func pidNamespace() string { return "" }

package exchange

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// exchangeNames swaps two directories' names in one step, as another uid
// racing the exchange would (renameat2 RENAME_EXCHANGE).
func exchangeNames(t *testing.T, a, b string) {
	t.Helper()
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("renameat2: %v", err)
	}
}

// Hole 3 with a real second uid: replay_dir checked at start in a parent
// only root could write; then the parent is opened to everyone (an
// operator's chmod, a shared mount remounted) and another uid (nobody)
// swaps replay_dir's name for a directory of its own between two uses of
// one token. The second use is still refused: the records live in the
// directory opened at start, whatever its name now leads to.
func TestDirReplaySwappedByAnotherUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the other uid")
	}
	const nobody = 65534
	base, err := os.MkdirTemp("", "replay-uid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "replay")
	r, err := OpenDirReplay(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	now := time.Now()
	if fresh, err := r.Use("iss jti-1", now.Add(time.Minute), now); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `cd "$1" && mkdir -m 700 decoy && mv replay replay.old && mv decoy replay`, "sh", base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the other uid's swap: %v %s", err, out)
	}
	if st, err := os.Stat(dir); err != nil || st.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Fatalf("the swap did not happen: %v", err)
	}
	if fresh, err := r.Use("iss jti-1", now.Add(time.Minute), now); fresh || err != nil {
		t.Errorf("the second use, replay_dir swapped by uid %d: fresh %v, %v", nobody, fresh, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a record was made in the other uid's directory")
	}
	// And at the next start, the parent others can write is refused.
	if _, err := OpenDirReplay(filepath.Join(base, "replay.old")); err == nil || !strings.Contains(err.Error(), "sticky") {
		t.Errorf("a parent others can write, at start: %v", err)
	}
}

//go:build unix

package jobdir

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The test binary is its own reaper, as devpi-credd is.
func TestMain(m *testing.M) {
	if dir := os.Getenv(ReaperEnv); dir != "" {
		os.Exit(Reap(dir, os.Stdin))
	}
	os.Exit(m.Run())
}

func waitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Lstat(path); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still there", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// When the job's end of the pipe closes without a Remove (the job died),
// the reaper removes the directory.
func TestReaperRemovesWhenTheJobDies(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Create(ExecPrefix, self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Path, "auth.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(d.Path); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("job directory: %v, %v", st, err)
	}
	d.reaper.w.Close() // what the kernel does when the job is killed
	waitGone(t, d.Path)
	d.reaper.w = nil
	if err := d.Remove(); err != nil {
		t.Errorf("Remove after the reaper: %v", err)
	}
}

func TestSweep(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name, owner string, age time.Duration) string {
		p := filepath.Join(tmp, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(p, ownerFile), []byte(owner), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	me := processStart(os.Getpid())
	dead := mk(ExecPrefix+"dead", "2147483646 1\n", 0)
	reused := mk(ExecPrefix+"reused", "1 not-its-start\n", 0)
	live := mk(EnvPrefix+"live", itoa(os.Getpid())+" "+me+" "+pidNamespace()+"\n", 0)
	// A job in another PID namespace (a container sharing /tmp): its PID 1
	// is not ours, whatever ours does.
	elsewhere := mk(ExecPrefix+"elsewhere", "1 1 pid:[1]\n", 0)
	young := mk(ExecPrefix+"young", "", 0)
	orphan := mk(ExecPrefix+"orphan", "", 2*orphanAge)
	foreign := mk("not-ours-dead", "2147483646 1\n", 0)
	link := filepath.Join(tmp, ExecPrefix+"link")
	if err := os.Symlink(dead, link); err != nil {
		t.Fatal(err)
	}
	removed := map[string]bool{}
	for _, p := range Sweep(tmp, time.Now()) {
		removed[p] = true
	}
	for p, want := range map[string]bool{dead: true, orphan: true, live: false, elsewhere: false, young: false, foreign: false, link: false, reused: processStart(1) != ""} {
		if removed[p] != want {
			t.Errorf("%s: removed %v, want %v", filepath.Base(p), removed[p], want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

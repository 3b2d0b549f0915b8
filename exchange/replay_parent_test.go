//go:build unix

package exchange

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A replay_dir refused for its parents is not made first: a refused
// check (config check run by root, or by the wrong user) left a
// directory behind that the daemon's own user then could not use
// ("belongs to uid 0"), nor remove.
func TestDirReplayRefusedParentMakesNothing(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "a", "replay")
	if _, err := OpenDirReplay(dir); err == nil {
		t.Fatal("a replay_dir in a parent anyone can write was taken")
	}
	if _, err := os.Lstat(filepath.Join(base, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused check made %s (%v)", filepath.Join(base, "a"), err)
	}
}

// config check checks replay_dir without making it: a missing one whose
// parents pass is reported missing (serve makes it), and nothing is made;
// one that exists is checked as serve checks it.
func TestCheckDirReplayMakesNothing(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "replay")
	exists, err := CheckDirReplay(dir)
	if err != nil || exists {
		t.Fatalf("a missing replay_dir in good parents: exists %v, %v", exists, err)
	}
	if _, err := os.Lstat(filepath.Join(base, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the check made %s (%v)", filepath.Join(base, "a"), err)
	}
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDirReplay(filepath.Join(base, "replay")); err == nil {
		t.Error("a missing replay_dir in a parent anyone can write was passed")
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	held := t.TempDir()
	if err := os.WriteFile(filepath.Join(held, "config.toml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if exists, err := CheckDirReplay(held); err == nil || !exists {
		t.Errorf("a replay_dir holding a config: exists %v, %v", exists, err)
	}
	if exists, err := CheckDirReplay(t.TempDir()); err != nil || !exists {
		t.Errorf("a good replay_dir: exists %v, %v", exists, err)
	}
}

// Replicas sharing replay_dir read its records by their own clocks. A
// replica whose clock is ahead sweeps by its clock; if it swept a record
// soon after the record's expiry, a replica whose clock is behind (and
// still takes the token) would take it again. Records are swept only
// recordGrace after their expiry; Seen still compares the record's own.
func TestDirReplaySweepAllowsClockSkew(t *testing.T) {
	dir := t.TempDir()
	ahead, behind := &DirReplay{Dir: dir}, &DirReplay{Dir: dir}
	now := time.Now()
	until := now.Add(time.Minute)
	if fresh, err := behind.Use("iss jti-1", until, now); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	// The replica ahead by five minutes sweeps while the one behind still
	// takes the token.
	if _, err := ahead.Use("iss jti-2", now.Add(6*time.Minute), now.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if seen, err := behind.Seen("iss jti-1", now); !seen || err != nil {
		t.Errorf("the record was swept by a replica 5 minutes ahead: seen %v, %v", seen, err)
	}
	if fresh, err := behind.Use("iss jti-1", until, now); fresh || err != nil {
		t.Errorf("the token was taken again after a replica 5 minutes ahead swept: fresh %v, %v", fresh, err)
	}
	// Past recordGrace, by any clock, the record goes.
	if _, err := ahead.Use("iss jti-3", now.Add(time.Hour), until.Add(recordGrace+2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if seen, _ := ahead.Seen("iss jti-1", now); seen {
		t.Errorf("a record %s past its expiry was not swept", recordGrace+2*time.Minute)
	}
}

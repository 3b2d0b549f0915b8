// Package jobdir makes the private directories that exec and env jobs keep
// their socket, links and devpi-client login in, and makes sure each dies
// with its job, even when the job is killed with SIGKILL: a reaper process
// removes the directory when the job's end of a pipe closes, and Sweep
// removes the directories of jobs that are gone (a reaper killed too).
package jobdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Prefixes of the directories, under the temporary directory.
const (
	ExecPrefix = "devpi-credd-exec-"
	EnvPrefix  = "devpi-credd-env-"
)

// ReaperEnv, set in devpi-credd's environment, makes it the reaper of the
// directory it names (see Reap).
const ReaperEnv = "DEVPI_CREDD_REAP"

// ownerFile, in each directory, names the job's process: "PID START NS",
// START being when the kernel started it (a reused PID is not taken for
// it) and NS its PID namespace (a job in a container that shares the
// temporary directory is not judged by PIDs of another namespace).
const ownerFile = ".owner"

// orphanAge: a directory without an owner file (its job died between
// creating it and writing the file) is left this long before a sweep.
const orphanAge = time.Minute

// Dir is a job's private directory.
type Dir struct {
	Path   string
	reaper reaper
}

// Create makes a new 0700 directory under the temporary directory, writes
// its owner file and starts its reaper; self is devpi-credd's executable.
// The directory lives until Remove, or until this process dies.
func Create(prefix, self string) (*Dir, error) {
	path, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: path}
	owner := fmt.Sprintf("%d %s %s\n", os.Getpid(), orDash(processStart(os.Getpid())), orDash(pidNamespace()))
	if err := os.WriteFile(filepath.Join(path, ownerFile), []byte(owner), 0o600); err != nil {
		_ = os.RemoveAll(path)
		return nil, err
	}
	if d.reaper, err = startReaper(self, path); err != nil {
		_ = os.RemoveAll(path)
		return nil, fmt.Errorf("starting the job directory's reaper: %w", err)
	}
	return d, nil
}

// Remove removes the directory and lets the reaper go.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.reaper.release()
	return err
}

// ours reports whether path may be a job directory of this user: a real
// directory (not a link) directly in a temporary directory, with one of
// the prefixes, owned by this user.
func ours(path string) bool {
	base := filepath.Base(path)
	if !strings.HasPrefix(base, ExecPrefix) && !strings.HasPrefix(base, EnvPrefix) {
		return false
	}
	st, err := os.Lstat(path)
	if err != nil || !st.IsDir() || st.Mode()&fs.ModeSymlink != 0 {
		return false
	}
	return ownedByMe(st)
}

// Sweep removes the job directories under tmp (default: the temporary
// directory) whose job is gone, and returns their paths.
func Sweep(tmp string, now time.Time) []string {
	if tmp == "" {
		tmp = os.TempDir()
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		path := filepath.Join(tmp, e.Name())
		if !ours(path) || alive(path, now) {
			continue
		}
		if os.RemoveAll(path) == nil {
			removed = append(removed, path)
		}
	}
	return removed
}

// alive reports whether the job that owns path still runs.
func alive(path string, now time.Time) bool {
	b, err := os.ReadFile(filepath.Join(path, ownerFile))
	if errors.Is(err, fs.ErrNotExist) {
		st, serr := os.Lstat(path)
		return serr == nil && now.Sub(st.ModTime()) < orphanAge
	}
	if err != nil {
		return true // unreadable: not ours to judge
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	start, ns := "", ""
	if len(f) > 1 && f[1] != "-" {
		start = f[1]
	}
	if len(f) > 2 && f[2] != "-" {
		ns = f[2]
	}
	if ns != "" && ns != pidNamespace() {
		return true // another PID namespace's job: its PIDs mean nothing here
	}
	return running(pid, start)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

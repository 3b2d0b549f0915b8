//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
)

func (w *worm) probe(name string, pid int, err error) {
	p := wormapi.Probe{Name: name, PID: pid, OK: err == nil}
	if err != nil {
		p.Detail = err.Error()
	}
	w.rep.Probes = append(w.rep.Probes, p)
}

// probeOpen tries to open /proc/PID/what: the kernel checks access at
// open (a read of mem at offset 0 fails anyway, nothing is mapped
// there); environ is read too.
func (w *worm) probeOpen(name string, pid int, what string) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, what))
	if err == nil {
		if what != "mem" {
			_, err = f.Read(make([]byte, 1))
		}
		f.Close()
	}
	w.probe(name, pid, err)
}

// probePtrace attaches to pid and lets it go again.
func (w *worm) probePtrace(name string, pid int) {
	runtime.LockOSThread() // ptrace belongs to the thread that attached
	defer runtime.UnlockOSThread()
	err := unix.PtraceAttach(pid)
	if err == nil {
		var ws unix.WaitStatus
		_, werr := unix.Wait4(pid, &ws, unix.WALL, nil)
		derr := unix.PtraceDetach(pid)
		if werr != nil || derr != nil {
			err = fmt.Errorf("attached, but wait %v, detach %v", werr, derr)
		}
	}
	w.probe(name, pid, err)
}

// probeGcore runs gdb's gcore on pid; a core file is success. The core
// is removed at once: what the worm wants from it, the memory scan reads.
func (w *worm) probeGcore(name string, pid int) {
	dir, err := os.MkdirTemp(w.plan.Dir, "gcore-")
	if err != nil {
		w.probe(name, pid, err)
		return
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.plan.Gcore, "-o", filepath.Join(dir, "core"), fmt.Sprint(pid))
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if _, serr := os.Stat(filepath.Join(dir, fmt.Sprintf("core.%d", pid))); err == nil && serr != nil {
		err = fmt.Errorf("gcore exited 0 but wrote no core: %s", lastLines(string(out)))
	} else if err != nil {
		err = fmt.Errorf("%v: %s", err, lastLines(string(out)))
	}
	w.probe(name, pid, err)
}

// lastLines is the last few lines of s, joined, for a report: gdb's
// reason comes a line or two before gcore's own.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

// firstLine is the first non-empty line of s.
func firstLine(s string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

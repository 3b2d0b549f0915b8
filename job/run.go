package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/harden"
)

// ProtectProcess hardens this process (harden.Process): undumpable, no
// core file, so its /proc/PID/environ and mem are not readable by the
// user's other processes, exec's child among them. It guards against
// accidents more than against a hostile process of the same user, which
// can start a job of its own; what did not hold is no reason to stop one.
func ProtectProcess() { _ = harden.Process() }

// Stdio is the child's standard input and outputs.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ExitError is a job that ended before or without its command's own exit
// code: Code is what the process should exit with (126 cannot run, 127
// not found, 128+N a signal before the start), as shells give them.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Run runs argv as the job's child, with the job's environment, and
// returns its exit code: 128+N when signal N ended it. Signals from sigs
// are passed on to the child (a Ctrl-C from the terminal, which reaches
// the child directly, is not sent twice); one already waiting when Run is
// called ends the job before the command starts. The child dies with this
// process, even on SIGKILL (Linux). ctx ending kills the child.
func (j *Job) Run(ctx context.Context, argv []string, stdio Stdio, sigs <-chan os.Signal) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no command to run")
	}
	select {
	case s := <-sigs:
		return 0, &ExitError{128 + signalNumber(s), fmt.Errorf("stopped by %v before the command started", s)}
	default:
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Env, c.Stdin, c.Stdout, c.Stderr = j.env, stdio.Stdin, stdio.Stdout, stdio.Stderr
	c.SysProcAttr = childProcAttr()
	// A stdin that is not a file is copied by a goroutine; do not wait for
	// it to close once the child is gone.
	c.WaitDelay = 2 * time.Second
	unlock := lockThread() // the parent-death signal belongs to this thread
	defer unlock()
	if err := c.Start(); err != nil {
		code := 127
		if errors.Is(err, fs.ErrPermission) {
			code = 126
		}
		return 0, &ExitError{code, fmt.Errorf("starting %s: %w", argv[0], err)}
	}
	j.child.Store(int64(c.Process.Pid))
	done := make(chan error, 1)
	go func() {
		err := c.Wait()
		// Reaped: the pid may be another process's from now on.
		j.child.Store(0)
		done <- err
	}()
	for {
		select {
		case s := <-sigs:
			if !fromTerminal(s) {
				_ = c.Process.Signal(s)
			}
		case <-ctx.Done():
			_ = c.Process.Kill()
		case err := <-done:
			return exitCode(err)
		}
	}
}

// exitCode is the child's exit code as a shell gives it.
func exitCode(err error) (int, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

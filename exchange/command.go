package exchange

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// AudienceVar tells an identity token command the audience to ask for.
const AudienceVar = "DEVPI_CREDD_AUDIENCE"

// IDTokenCommandTimeout is how long an identity token command may take
// unless the Client says otherwise: a CI agent's tool asks a service on
// the runner's host, which answers in well under a second.
const IDTokenCommandTimeout = 30 * time.Second

// ErrIDTokenCommand: the identity token command failed, or printed no
// token.
var ErrIDTokenCommand = errors.New("the identity token command failed")

// command runs line by the system's shell, as a CI config's own lines
// are, so that it can name the audience ($DEVPI_CREDD_AUDIENCE) as its
// CI's tool wants it. The token comes back on stdout and never goes into
// an argument or a variable; stderr is the job's.
func (c *Client) command(ctx context.Context, line, aud string) (string, error) {
	timeout := c.CommandTimeout
	if timeout <= 0 {
		timeout = IDTokenCommandTimeout
	}
	job := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	environ := c.Environ
	if environ == nil {
		environ = os.Environ()
	}
	stderr := c.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd := shellCommand(ctx, line)
	cmd.Env = commandEnv(environ, aud)
	out := &capped{max: maxIDToken}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, stderr
	// A child of the shell that outlives it keeps stdout open: stop
	// waiting for it soon after the shell is gone.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case job.Err() != nil:
		err = fmt.Errorf("the identity token command was stopped: %w", job.Err())
	case ctx.Err() != nil:
		err = fmt.Errorf("the identity token command did not finish within %s", timeout)
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		err = fmt.Errorf("the identity token command exited with status %d", ee.ExitCode())
	case errors.As(err, &ee):
		err = fmt.Errorf("the identity token command was killed (%s)", ee.ProcessState)
	case err != nil:
		err = fmt.Errorf("the identity token command cannot run: %w", err)
	case out.over:
		err = fmt.Errorf("the identity token command printed more than %d KiB", maxIDToken>>10)
	}
	if err != nil {
		return "", kinded{ErrIDTokenCommand, err}
	}
	return out.b.String(), nil
}

// commandEnv is the command's environment: the job's, without the
// variables an identity token could be in, and the audience.
func commandEnv(environ []string, aud string) []string {
	hide := append(IDTokenVars(aud), AudienceVar)
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains(hide, k) {
			env = append(env, kv)
		}
	}
	return append(env, AudienceVar+"="+aud)
}

// capped keeps the first max bytes written to it and drains the rest,
// so that a command printing too much ends instead of blocking on a full
// pipe.
type capped struct {
	b    strings.Builder
	max  int
	over bool
}

func (w *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := w.max - w.b.Len(); len(p) > room {
		w.over = true
		p = p[:max(room, 0)]
	}
	w.b.Write(p)
	return n, nil
}

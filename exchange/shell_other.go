//go:build !windows

package exchange

import (
	"context"
	"os/exec"
)

// shellCommand runs line as CI configs' own lines run: by /bin/sh.
func shellCommand(ctx context.Context, line string) *exec.Cmd {
	return exec.CommandContext(ctx, "/bin/sh", "-c", line)
}

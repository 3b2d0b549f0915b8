package exchange

import (
	"context"
	"os"
	"os/exec"
	"syscall"
)

// shellCommand runs line by cmd.exe. Its command line is given whole:
// Go's quoting of arguments is not the one cmd.exe reads.
func shellCommand(ctx context.Context, line string) *exec.Cmd {
	comspec := os.Getenv("ComSpec")
	if comspec == "" {
		comspec = "cmd.exe"
	}
	cmd := exec.CommandContext(ctx, comspec)
	cmd.SysProcAttr = &syscall.SysProcAttr{CmdLine: `"` + comspec + `" /d /s /c "` + line + `"`}
	return cmd
}

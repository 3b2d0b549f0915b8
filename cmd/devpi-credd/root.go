package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/internal/jobdir"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/token"
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes, documented in docs/reference.md and in --help.
const (
	exitOK          = 0
	exitFailed      = 1 // refused by the server, not found, or any other failure
	exitUsage       = 2 // bad flags, arguments or input (malformed token, bad expiry)
	exitUnreachable = 3 // no answer from devpi-server, or no daemon
)

const exitCodesHelp = `Exit codes:
  0  success
  1  refused or failed: the server or daemon said no, nothing found, nothing done
  2  usage: bad flags, arguments, input or config (a malformed token, a bad expiry)
  3  unreachable: no answer from devpi-server, or the daemon is not running`

// app is what a command may touch of the outside world. Tests build their
// own; Main builds the real one.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// interactive reports whether questions can be asked on the terminal.
	interactive  func() bool
	readPassword func(prompt string) (string, error)
	// openTTY opens the person's terminal, where one-time codes are asked
	// for (helper.OpenTTY); readSecret asks on it without echo (a
	// passphrase). Neither is standard input: that may be a pipe, and
	// --code-stdin and --passphrase-stdin say when it holds them.
	openTTY    helper.Terminal
	readSecret func(prompt string) (string, error)
	// sealWorkFactor is the sealed store's scrypt work factor for
	// token login --seal (0: age's default; tests make it small).
	sealWorkFactor int
	http           *http.Client
	stdinLines     *bufio.Reader
}

func realApp() *app {
	fd := int(os.Stdin.Fd())
	return &app{
		stdin:       os.Stdin,
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		getenv:      os.Getenv,
		now:         time.Now,
		interactive: func() bool { return term.IsTerminal(fd) && term.IsTerminal(int(os.Stderr.Fd())) },
		readPassword: func(prompt string) (string, error) {
			fmt.Fprint(os.Stderr, prompt)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(os.Stderr)
			return string(b), err
		},
		openTTY:    helper.OpenTTY,
		readSecret: readSecretOnTTY,
	}
}

// Main runs the command line and returns the process exit code. Started
// as "keyring", it is the keyring CLI that pip and uv run.
func Main() int {
	if dir := os.Getenv(jobdir.ReaperEnv); dir != "" {
		return jobdir.Reap(dir, os.Stdin)
	}
	a := realApp()
	if keyringName(os.Args[0]) {
		return helper.KeyringMain(os.Args[1:], a.stdout, a.stderr, a.getenv)
	}
	return a.run(os.Args[1:])
}

// exitError carries an exit code with the message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

func exitCode(err error) int {
	var ee *exitError
	var se *devpi.ServerError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, token.ErrInvalid):
		return exitUsage
	case errors.Is(err, devpi.ErrUnreachable):
		return exitUnreachable
	case errors.As(err, &se):
		return exitFailed
	}
	return exitFailed
}

func (a *app) run(args []string) int {
	if a.stdinLines == nil {
		a.stdinLines = bufio.NewReader(a.stdin)
	}
	root := a.newRootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	if !errors.Is(err, errQuiet) {
		msg := msg.OneLine(err.Error())
		fmt.Fprintf(a.stderr, "devpi-credd: %s\n", msg)
	}
	return exitCode(err)
}

func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "devpi-credd",
		Short: "Short-lived, narrowly scoped devpi tokens for pip, uv, twine and devpi-client",
		Long: `devpi-credd manages devpi-tokens tokens: it creates, lists, deletes, derives
and inspects them like devpi-client's token-* commands, and keeps one
long-lived token per server ('token login'), from which its daemon ('serve')
derives short-lived, narrowly scoped tokens on request ('get').

` + exitCodesHelp,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          args(cobra.NoArgs),
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{exitUsage, err}
	})
	root.AddCommand(a.newLoginCmd(), a.newLogoutCmd(), a.newTokenCmd(), a.newServeCmd(), a.newGetCmd(), a.newStatusCmd(),
		a.newKeyringCmd(), a.newKeyringLinkCmd(), a.newDevpiLoginCmd(), a.newExecCmd(), a.newEnvCmd(), a.newServiceCmd(),
		a.newLockCmd(), a.newUnlockCmd(), a.newApprovalCmd(), a.newRevokeCmd(), a.newConfigCmd(), a.newVersionCmd(), a.newSetupSystemCmd())
	root.AddCommand(a.buildCommands()...)
	return root
}

// args wraps a cobra positional-argument check so that its errors exit 2.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{exitUsage, err}
		}
		return nil
	}
}

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.stderr, "devpi-credd: warning: "+format+"\n", args...)
}

func (a *app) infof(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

// confirm asks a yes/no question on the terminal. Without one it refuses
// and tells how to say yes up front, so scripts never hang on a prompt.
func (a *app) confirm(yes bool, question, flagHint string) error {
	if yes {
		return nil
	}
	if !a.interactive() {
		return &exitError{exitFailed, fmt.Errorf("%s; not asking without a terminal: pass %s to confirm", msg.OneLine(question), flagHint)}
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", question)
	line, _ := a.stdinLines.ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return &exitError{exitFailed, errors.New("aborted")}
}

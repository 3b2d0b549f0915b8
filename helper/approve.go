package helper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// CodeWait bounds how long the person has to type a one-time code: a
// prompt nobody answers ends, and with it the tool that waits on it.
const CodeWait = 2 * time.Minute

// maxCodeLine bounds what is read of the person's answer: a code is six
// digits, perhaps spaced.
const maxCodeLine = 256

// ErrNoTerminal is wrapped when there is no terminal to ask the person on
// (a CI job, a process started with setsid, a service).
var ErrNoTerminal = errors.New("no terminal to ask on")

// ErrNoCode is wrapped when the person gave no code: an empty line, the
// end of the input, or no answer in time.
var ErrNoCode = errors.New("no one-time code given")

// Terminal opens the person's terminal, to ask on and to read the answer
// from. Never standard input or output: those belong to the tool that ran
// the helper (pip reads its stdout), and a terminal is where the person
// is. OpenTTY is the real one; tests pass their own.
type Terminal func() (io.ReadWriteCloser, error)

// NoTerminalError: the daemon wants a one-time code for URL (redacted),
// and there is no terminal to ask for it on. Its text says what to run
// instead.
type NoTerminalError struct{ URL string }

func (e *NoTerminalError) Error() string {
	return fmt.Sprintf("an upload to %s needs a one-time code and there is no terminal to ask on: run the upload under 'devpi-credd exec --approve -- ...' or use 'devpi-credd get --code-stdin %s'", e.URL, e.URL)
}

func (e *NoTerminalError) Unwrap() error { return ErrNoTerminal }

// Approver asks the person for a one-time code when the daemon wants one:
// the one place where the keyring helper and devpi-credd's commands
// prompt for it. Its zero value asks on /dev/tty.
type Approver struct {
	// Terminal opens the terminal to ask on (default OpenTTY).
	Terminal Terminal
	// Wait bounds the person's answer (default CodeWait).
	Wait time.Duration
	// CallTimeout, when set, bounds each call to the daemon, not the
	// prompt between them: the person's typing has its own bound.
	CallTimeout time.Duration
}

// Credentials asks src for req. When the daemon answers that the token
// needs approval (approval_required) and req carries no code, it asks the
// person once on the terminal and asks src again with the code. A refusal
// of that code is told on the terminal too, where the person looks, and
// returned: there is no second prompt, so that a process that keeps
// asking cannot make the person type code after code.
func (a Approver) Credentials(ctx context.Context, src Source, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	c, err := a.call(ctx, src, req)
	if req.Code != "" || !IsCode(err, localapi.CodeApprovalRequired) {
		return c, err
	}
	url := safeurl.Redact(req.URL)
	tty, err := a.open()
	if err != nil {
		return nil, &NoTerminalError{URL: url}
	}
	defer tty.Close()
	code, err := readCode(ctx, tty, "devpi-credd: approve the upload to "+url+": one-time code: ", a.wait())
	if err != nil {
		return nil, fmt.Errorf("the upload to %s is not approved: %w", url, err)
	}
	req.Code = code
	c, err = a.call(ctx, src, req)
	if IsCode(err, localapi.CodeApprovalRefused) {
		fmt.Fprintf(tty, "devpi-credd: %s\n", msg.OneLine(err.Error()))
	}
	return c, err
}

// AskCode asks the person for a one-time code on the terminal with
// prompt, for a request that needs one up front (a session that can
// upload, exec --approve).
func (a Approver) AskCode(ctx context.Context, prompt string) (string, error) {
	tty, err := a.open()
	if err != nil {
		return "", err
	}
	defer tty.Close()
	return readCode(ctx, tty, prompt, a.wait())
}

func (a Approver) open() (io.ReadWriteCloser, error) {
	open := a.Terminal
	if open == nil {
		open = OpenTTY
	}
	tty, err := open()
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoTerminal, err)
	}
	return tty, nil
}

func (a Approver) wait() time.Duration {
	if a.Wait > 0 {
		return a.Wait
	}
	return CodeWait
}

func (a Approver) call(ctx context.Context, src Source, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	if a.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.CallTimeout)
		defer cancel()
	}
	return src.Credentials(ctx, req)
}

// readCode writes prompt on tty and reads one line: the code, without
// the spaces an authenticator shows in it. It gives up after wait (or
// when ctx ends), closing tty so that the read ends too.
func readCode(ctx context.Context, tty io.ReadWriteCloser, prompt string, wait time.Duration) (string, error) {
	if _, err := io.WriteString(tty, prompt); err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoTerminal, err)
	}
	type answer struct {
		line string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		line, err := readLine(tty, maxCodeLine)
		got <- answer{line, err}
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case ans := <-got:
		code := CleanCode(ans.line)
		if code == "" {
			return "", ErrNoCode
		}
		return code, nil
	case <-timer.C:
		_, _ = io.WriteString(tty, "\n")
		tty.Close()
		return "", fmt.Errorf("%w within %s", ErrNoCode, wait)
	case <-ctx.Done():
		_, _ = io.WriteString(tty, "\n")
		tty.Close()
		return "", fmt.Errorf("%w: %v", ErrNoCode, ctx.Err())
	}
}

// CleanCode is a one-time code as typed: without the spaces an
// authenticator app shows in it (123 456) and the line's end.
func CleanCode(line string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, line)
}

// readLine reads up to a line end, at most max bytes, one at a time: a
// terminal hands over a line per read anyway, and nothing after the line
// is taken from whoever reads next (a second prompt, the job's command).
func readLine(r io.Reader, max int) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < max {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			return string(line), err
		}
	}
	return string(line), nil
}

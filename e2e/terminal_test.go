//go:build e2e && linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// terminal is the person's terminal: a shell of the developer's in a
// tmux pane, on a private tmux server (its socket in a directory of the
// test's) that the developer's programs cannot reach. What the person
// types goes in through tmux's paste buffer, so it is in no program's
// argv; what the terminal shows is read with capture-pane.
type terminal struct {
	t      *testing.T
	socket string
	n      int // commands run so far, for their markers
}

// pollEvery is how often the pane is read while waiting for text.
const pollEvery = 50 * time.Millisecond

// newTerminal starts the shell; it ends with the test.
func newTerminal(t *testing.T, d *developer) *terminal {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	term := &terminal{t: t, socket: filepath.Join(dir, "tmux.sock")}
	conf := filepath.Join(dir, "tmux.conf")
	// The whole session in the history, for the markers; a pane that
	// stays when its shell ends, to see why.
	must(t, os.WriteFile(conf, []byte("set -g history-limit 100000\nset -g remain-on-exit on\n"), 0o600))
	shell := append([]string{"env", "-i"}, d.env("PS1=$ ", "TERM=screen")...)
	shell = append(shell, "bash", "--norc", "--noprofile", "-i")
	args := append([]string{"-u", "-S", term.socket, "-f", conf, "new-session", "-d", "-s", "person", "-x", "250", "-y", "50", "--"}, d.asDev(shell[0], shell[1:]...)...)
	cmd := exec.Command("tmux", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TERM=screen"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = term.tmux(nil, "kill-server") })
	term.waitText("the shell's prompt", regexp.MustCompile(`(?m)^\$ $`), 30*time.Second)
	return term
}

// tmux runs a tmux command on the private server with stdin.
func (term *terminal) tmux(stdin []byte, args ...string) error {
	cmd := exec.Command("tmux", append([]string{"-S", term.socket}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tmux %s: %v: %s", args[0], err, out)
	}
	return nil
}

// screen is everything the pane has shown, its history included, with
// wrapped lines joined.
func (term *terminal) screen() string {
	cmd := exec.Command("tmux", "-S", term.socket, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "person")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		term.t.Fatalf("tmux capture-pane: %v", err)
	}
	return string(out)
}

// typeLine types text and Enter, as the person would.
func (term *terminal) typeLine(text string) {
	term.t.Helper()
	must(term.t, term.tmux([]byte(text), "load-buffer", "-b", "typed", "-"))
	must(term.t, term.tmux(nil, "paste-buffer", "-d", "-b", "typed", "-t", "person"))
	must(term.t, term.tmux(nil, "send-keys", "-t", "person", "Enter"))
}

// waitText polls the pane until re matches, or fails the test after
// within; it returns the match's groups.
func (term *terminal) waitText(what string, re *regexp.Regexp, within time.Duration) []string {
	term.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := term.screen()
		if m := re.FindStringSubmatch(s); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("%s: not on the terminal within %s; it shows:\n%s", what, within, tail(s, 60))
		}
		time.Sleep(pollEvery)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// session is one command line the person runs at the terminal.
type session struct {
	term *terminal
	n    int
	line string
}

// run types cmdline between two markers the shell prints (printf, so
// that the typed line itself does not show them).
func (term *terminal) run(cmdline string) *session {
	term.t.Helper()
	term.n++
	s := &session{term: term, n: term.n, line: cmdline}
	term.typeLine(fmt.Sprintf(`printf '=%%s=\n' start%d; %s; printf '=%%s %%s=\n' end%d $?`, s.n, cmdline, s.n))
	term.waitText("the start of "+cmdline, regexp.MustCompile(fmt.Sprintf(`(?m)^=start%d=$`, s.n)), 30*time.Second)
	return s
}

// output is what the command has shown so far.
func (s *session) output() string {
	screen := s.term.screen()
	start := fmt.Sprintf("=start%d=\n", s.n)
	i := strings.LastIndex(screen, start)
	if i < 0 {
		s.term.t.Fatalf("the start marker of %q is gone from the terminal", s.line)
	}
	out := screen[i+len(start):]
	if j := strings.Index(out, fmt.Sprintf("=end%d ", s.n)); j >= 0 {
		out = out[:j]
	}
	return out
}

// waitOutput polls until re matches the command's output.
func (s *session) waitOutput(what string, re *regexp.Regexp, within time.Duration) []string {
	s.term.t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := s.output()
		if m := re.FindStringSubmatch(out); m != nil {
			return m
		}
		if s.done() {
			s.term.t.Fatalf("%s: %q ended without it:\n%s", what, s.line, out)
		}
		if time.Now().After(deadline) {
			s.term.t.Fatalf("%s: not shown by %q within %s:\n%s", what, s.line, within, tail(out, 60))
		}
		time.Sleep(pollEvery)
	}
}

// count is how often re matches the output so far.
func (s *session) count(re *regexp.Regexp) int { return len(re.FindAllStringIndex(s.output(), -1)) }

func (s *session) endMarker() *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`(?m)^=end%d (\d+)=$`, s.n))
}

func (s *session) done() bool { return s.endMarker().MatchString(s.term.screen()) }

// wait waits for the command to end and returns its exit code and
// output.
func (s *session) wait(within time.Duration) (int, string) {
	s.term.t.Helper()
	m := s.term.waitText("the end of "+s.line, s.endMarker(), within)
	code, _ := strconv.Atoi(m[1])
	return code, s.output()
}

// prompt answers the command's prompts matching re in turn: each time
// one more is shown, answer gives what to type (a passphrase, a code).
// It returns once the command ends, with its exit code and output.
func (s *session) prompts(within time.Duration, answers ...promptAnswer) (int, string) {
	s.term.t.Helper()
	deadline := time.Now().Add(within)
	answered := map[int]int{}
	for {
		out := s.output()
		for i, a := range answers {
			if n := len(a.re.FindAllStringIndex(out, -1)); n > answered[i] {
				answered[i] = n
				s.term.typeLine(a.answer())
			}
		}
		if s.done() {
			return s.wait(time.Second)
		}
		if time.Now().After(deadline) {
			s.term.t.Fatalf("%q did not end within %s:\n%s", s.line, within, tail(out, 60))
		}
		time.Sleep(pollEvery)
	}
}

// promptAnswer is what the person types at a prompt.
type promptAnswer struct {
	re     *regexp.Regexp
	answer func() string
}

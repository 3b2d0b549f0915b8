//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
)

// call is one way of asking for a token: a program, and the code it
// gets on standard input or at a terminal's prompt.
type call struct {
	path string // what the report calls it
	code string // wormapi.CodeNone, CodeWrong or CodeSpent
	argv []string
	// stdin is written on the program's standard input (else /dev/null).
	stdin string
	// tty: the program gets a terminal of the worm's, whose first prompt
	// for a code is answered with answer.
	tty    bool
	answer string
	// files are read after the program ends, for what it wrote there
	// (devpi-login writes devpi-client's auth.json); they are removed
	// before it starts, so what is there is this attempt's.
	files []string
}

// attempt runs c and collects every token in what it printed or wrote.
func (w *worm) attempt(c call) {
	a := wormapi.Attempt{Path: c.path, Code: c.code}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Dir = w.plan.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal of the test's
	if c.stdin != "" {
		cmd.Stdin = strings.NewReader(c.stdin)
	}
	for _, f := range c.files {
		_ = os.Remove(f)
	}
	var term *terminal
	if c.tty {
		var err error
		if term, err = openTerminal(); err != nil {
			w.fail("%s: a terminal: %v", c.path, err)
			return
		}
		cmd.Stdin = term.slave
		cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0
	}
	err := cmd.Start()
	if term != nil {
		term.slave.Close() // the child holds it now
		if err == nil {
			go term.answer(cmd, c.answer)
		}
	}
	if err == nil {
		err = cmd.Wait()
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		a.Exit = ee.ExitCode()
	case err != nil:
		if term != nil {
			term.close()
		}
		w.fail("%s: %v", c.path, err)
		return
	}
	a.Said = firstLine(stderr.String())
	out := append(stdout.Bytes(), stderr.Bytes()...)
	if term != nil {
		seen := term.close()
		a.Prompted = term.prompts() > 0
		out = append(out, seen...)
		if a.Said == "" {
			a.Said = lastLines(string(seen))
		}
	}
	source := fmt.Sprintf("attempt:%s (%s)", c.path, c.code)
	a.Tokens = w.col.scan(out, source)
	for _, f := range c.files {
		if data, _, err := readRegular(f, make([]byte, maxFileBytes)); err == nil {
			a.Tokens += w.col.scan(data, source+" "+f)
		}
	}
	w.rep.Attempts = append(w.rep.Attempts, a)
}

// terminal is a pseudo-terminal of the worm's: whoever prompts on
// /dev/tty for a code is not talking to a person.
type terminal struct {
	master, slave *os.File
	mu            sync.Mutex
	seen          bytes.Buffer
	done          chan struct{}
}

func openTerminal() (*terminal, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	t := &terminal{master: m, slave: s, done: make(chan struct{})}
	go t.read()
	return t, nil
}

// read keeps what the program writes on the terminal, until it and its
// children have closed it.
func (t *terminal) read() {
	defer close(t.done)
	buf := make([]byte, 4096)
	for {
		n, err := t.master.Read(buf)
		t.mu.Lock()
		t.seen.Write(buf[:n])
		t.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (t *terminal) prompts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Count(strings.ToLower(t.seen.String()), "code:")
}

// answer types code at the first prompt and an empty line at the next
// two (a person who gave up); a program still waiting after 30 s is
// killed.
func (t *terminal) answer(cmd *exec.Cmd, code string) {
	answered := 0
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-t.done:
			return
		case <-deadline:
			_ = cmd.Process.Kill()
			return
		case <-time.After(20 * time.Millisecond):
		}
		if n := t.prompts(); n > answered && answered < 3 {
			line := "\n"
			if answered == 0 {
				line = code + "\n"
			}
			_, _ = t.master.Write([]byte(line))
			answered = n
		}
	}
}

// close waits for the terminal's last output and returns all of it.
func (t *terminal) close() []byte {
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
	}
	t.master.Close()
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.seen.Bytes())
}

// raw calls the daemon's API on its socket directly, as any program of
// the user can.
func (w *worm) raw(socket, method, path string, body any) (int, []byte, error) {
	// A connection per request, closed after it: idle ones kept open
	// would count against the daemon's connections per uid.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://devpi-credd"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, data, err
}

// rawAttempt is an attempt through the raw API: Exit is the HTTP status.
func (w *worm) rawAttempt(path, code, apiPath string, body any) wormapi.Attempt {
	a := wormapi.Attempt{Path: path, Code: code}
	status, data, err := w.raw(w.plan.Socket, "POST", apiPath, body)
	a.Exit = status
	if err != nil {
		a.Said = err.Error()
	} else if status >= 300 {
		a.Said = firstLine(string(data))
	}
	a.Tokens = w.col.scan(data, fmt.Sprintf("attempt:%s (%s)", path, code))
	w.rep.Attempts = append(w.rep.Attempts, a)
	return a
}

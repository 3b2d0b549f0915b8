package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/localapi"
)

var errNoTTYSecret = fmt.Errorf("%w (open /dev/tty: no such device or address)", helper.ErrNoTerminal)

// testTTY is the person's terminal: what they type comes from in; what
// is written to it is kept.
type testTTY struct {
	in     io.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	opened int
}

func (t *testTTY) Read(p []byte) (int, error) { return t.in.Read(p) }
func (t *testTTY) Close() error               { return nil }
func (t *testTTY) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.Write(p)
}

func (t *testTTY) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

// testRun is one command line run in process against a fake daemon.
type testRun struct {
	code           int
	stdout, stderr string
	tty            *testTTY
	secretPrompts  []string
}

// session is a fake daemon and what a person brings to it: lines typed
// on the terminal (tty; nil: there is no terminal) and passphrases typed
// without echo.
type session struct {
	t       *testing.T
	d       *fakeDaemon
	env     map[string]string
	tty     *string
	secrets []string
}

func newSession(t *testing.T, d *fakeDaemon) *session {
	t.Helper()
	dir := t.TempDir()
	socket, stop, err := d.serve(filepath.Join(dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &session{t: t, d: d, env: map[string]string{
		"DEVPI_CREDD_SOCKET": socket, "HOME": dir, "XDG_CONFIG_HOME": filepath.Join(dir, "config"),
		"XDG_STATE_HOME": filepath.Join(dir, "state"), "DEVPI_CLIENTDIR": filepath.Join(dir, "devpi-client"),
	}}
}

// typing gives the session a terminal on which the person types text.
func (s *session) typing(text string) *session { s.tty = &text; return s }

func (s *session) run(stdin string, args ...string) testRun {
	s.t.Helper()
	return s.runWith(strings.NewReader(stdin), nil, args...)
}

// runWith runs with stdin, and stdout copied to also, when given (a
// co-process that answers what it reads).
func (s *session) runWith(stdin io.Reader, also io.Writer, args ...string) testRun {
	s.t.Helper()
	var out, errb bytes.Buffer
	var stdout io.Writer = &out
	if also != nil {
		stdout = io.MultiWriter(&out, also)
	}
	r := testRun{}
	a := &app{
		stdin: stdin, stdout: stdout, stderr: &errb,
		getenv: func(k string) string { return s.env[k] }, now: time.Now,
		interactive:    func() bool { return false },
		sealWorkFactor: 10,
		readPassword:   func(string) (string, error) { return "", errors.New("no stdin terminal in tests") },
		openTTY: func() (io.ReadWriteCloser, error) {
			if s.tty == nil {
				return nil, errors.New("open /dev/tty: no such device or address")
			}
			if r.tty == nil {
				r.tty = &testTTY{in: bufio.NewReader(strings.NewReader(*s.tty))}
			}
			r.tty.opened++
			return r.tty, nil
		},
		readSecret: func(prompt string) (string, error) {
			r.secretPrompts = append(r.secretPrompts, prompt)
			if s.tty == nil {
				return "", errNoTTYSecret
			}
			if len(s.secrets) == 0 {
				s.t.Fatalf("asked for a secret (%q) the test has none for", prompt)
			}
			p := s.secrets[0]
			s.secrets = s.secrets[1:]
			return p, nil
		},
	}
	r.code = a.run(args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// requests are the daemon's requests but status reads.
func (s *session) requests() []string {
	var out []string
	for _, r := range s.d.requests() {
		if !strings.HasPrefix(r, localapi.PathStatus) {
			out = append(out, r)
		}
	}
	return out
}

func (s *session) wantRequests(want ...string) {
	s.t.Helper()
	if got := s.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		s.t.Errorf("the daemon got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (r testRun) want(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) || stderr == "" && r.stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", r.code, r.stdout, r.stderr, code, stdout, stderr)
	}
}

func TestApprovalSetupOnTheTerminal(t *testing.T) {
	s := newSession(t, &fakeDaemon{}).typing(codeNew + "\n")
	r := s.run("", "approval", "setup", "--account", "alice@laptop")
	r.want(t, 0, "approval on: every token that can upload needs a one-time code from alice@laptop and lives 2m0s at most\n", "")
	first, rest, _ := strings.Cut(r.stdout, "\n")
	if first != fakeURI {
		t.Errorf("the first line is %q, not the URI", first)
	}
	if qr, _, _ := strings.Cut(rest, "Scan the QR code"); !strings.Contains(qr, "█") || strings.Count(qr, "\n") < 10 {
		t.Errorf("no QR code after the URI: %q", qr)
	}
	if r.tty.String() != "one-time code: " {
		t.Errorf("the terminal shows %q", r.tty)
	}
	s.wantRequests(
		`/v1/approval/begin {"account":"alice@laptop"}`,
		`/v1/approval/confirm {"id":"e1","code":"`+codeNew+`"}`)
}

// Enrolling again in personal sealed mode, all from standard input: the
// passphrase, then the current code, then the new one, read as needed.
func TestApprovalSetupAgainFromStdin(t *testing.T) {
	s := newSession(t, &fakeDaemon{sealed: true, opened: true, enrolled: true, uploads: true})
	r := s.run(fakePassphrase+"\n"+codeNow+"\n"+codeNew+"\n", "approval", "setup", "--passphrase-stdin", "--code-stdin", "--json")
	r.want(t, 0, `"id": "e1"`, "approval on: ")
	var e localapi.ApprovalEnrollment
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.ID != "e1" || e.URI != fakeURI || e.Expires == 0 || strings.Contains(r.stdout, "█") {
		t.Errorf("stdout is not the enrollment alone: %q (%v)", r.stdout, err)
	}
	if r.tty != nil || len(r.secretPrompts) != 0 {
		t.Error("the terminal was used")
	}
	s.wantRequests(
		`/v1/approval/begin {"code":"`+codeNow+`"}`,
		`/v1/approval/confirm {"id":"e1","code":"`+codeNew+`","passphrase":"`+fakePassphrase+`"}`)
}

// On the terminal in sealed mode: the passphrase without echo, then the
// current code, then the new one.
func TestApprovalSetupAgainOnTheTerminal(t *testing.T) {
	s := newSession(t, &fakeDaemon{sealed: true, opened: true, enrolled: true, uploads: true}).typing(codeNow + "\n" + codeNew + "\n")
	s.secrets = []string{fakePassphrase}
	r := s.run("", "approval", "setup")
	r.want(t, 0, "approval on", "")
	if r.tty.String() != "one-time code of the authenticator set up now: one-time code: " || len(r.secretPrompts) != 1 {
		t.Errorf("terminal %q, passphrase prompts %q", r.tty, r.secretPrompts)
	}
	s.wantRequests(
		`/v1/approval/begin {"code":"`+codeNow+`"}`,
		`/v1/approval/confirm {"id":"e1","code":"`+codeNew+`","passphrase":"`+fakePassphrase+`"}`)
}

func TestApprovalSetupRefusals(t *testing.T) {
	t.Run("no terminal", func(t *testing.T) {
		s := newSession(t, &fakeDaemon{})
		r := s.run("", "approval", "setup")
		r.want(t, 1, "", "devpi-credd: a one-time code is needed and there is no terminal to ask on: pass --code-stdin and write the code on standard input\n")
		if strings.Contains(r.stdout, "otpauth") {
			t.Error("the secret was shown, though nobody could confirm it")
		}
		s.wantRequests()
	})
	t.Run("sealed store not open", func(t *testing.T) {
		s := newSession(t, &fakeDaemon{sealed: true}).typing(codeNew + "\n")
		s.run("", "approval", "setup").want(t, 1, "", "devpi-credd: the daemon's sealed store is not open: run 'devpi-credd unlock' first\n")
		s.wantRequests()
	})
	t.Run("wrong first code", func(t *testing.T) {
		s := newSession(t, &fakeDaemon{}).typing("111 222\n")
		r := s.run("", "approval", "setup")
		r.want(t, 1, fakeURI, "devpi-credd: the one-time code is wrong\n")
		if strings.Contains(r.stderr+r.stdout, "111") {
			t.Error("the code was repeated")
		}
	})
	t.Run("enrolled, no current code", func(t *testing.T) {
		s := newSession(t, &fakeDaemon{enrolled: true, uploads: true}).typing("\n")
		s.run("", "approval", "setup").want(t, 1, "", "no one-time code given")
		s.wantRequests()
	})
	t.Run("no passphrase on stdin", func(t *testing.T) {
		s := newSession(t, &fakeDaemon{sealed: true, opened: true})
		s.run("", "approval", "setup", "--passphrase-stdin", "--code-stdin").want(t, 2, "", "devpi-credd: --passphrase-stdin: no passphrase on standard input\n")
	})
}

func TestApprovalOff(t *testing.T) {
	s := newSession(t, &fakeDaemon{enrolled: true, uploads: true}).typing(codeNow + "\n")
	s.run("", "approval", "off").want(t, 0, "approval off: tokens that can upload are handed out without a one-time code\n", "")
	s.wantRequests(`/v1/approval/off {"code":"` + codeNow + `"}`)
	// Off already: nothing asked.
	s.typing("")
	s.run("", "approval", "off").want(t, 0, "approval is off already\n", "")
	s.wantRequests(`/v1/approval/off {"code":"` + codeNow + `"}`)

	s = newSession(t, &fakeDaemon{sealed: true, opened: true, enrolled: true, uploads: true})
	s.run(fakePassphrase+"\n"+codeNow+"\n", "approval", "off", "--passphrase-stdin", "--code-stdin").want(t, 0, "approval off", "")
	s.wantRequests(`/v1/approval/off {"code":"` + codeNow + `","passphrase":"` + fakePassphrase + `"}`)
}

func TestApprovalStatus(t *testing.T) {
	s := newSession(t, &fakeDaemon{sealed: true, opened: true, enrolled: true, uploads: true, account: "alice@host"})
	r := s.run("", "approval", "status")
	r.want(t, 0, "approval        on: uploads need a one-time code; approved tokens live 2m0s at most\nauthenticator   alice@host\npolicy kept in  the sealed store\n", "")
	r = s.run("", "approval", "status", "--json")
	var ap localapi.ApprovalStatus
	if err := json.Unmarshal([]byte(r.stdout), &ap); err != nil || !ap.Enrolled || !ap.Uploads || ap.Store != "sealed" {
		t.Errorf("%q: %+v %v", r.stdout, ap, err)
	}
	s = newSession(t, &fakeDaemon{sealed: true})
	s.run("", "approval", "status").want(t, 0, "approval  unknown until the sealed store is opened ('devpi-credd unlock')\n", "")
	s.run("", "status").want(t, 0, "sealed store  not open: no tokens from it until 'devpi-credd unlock'\n", "")
	s = newSession(t, &fakeDaemon{})
	s.run("", "approval", "status").want(t, 0, "approval  off: uploads need no one-time code ('devpi-credd approval setup' turns it on)\n", "")
}

func TestUnlockAndLock(t *testing.T) {
	s := newSession(t, &fakeDaemon{sealed: true}).typing("")
	s.secrets = []string{fakePassphrase}
	r := s.run("", "unlock")
	r.want(t, 0, "daemon unlocked, its sealed store open\n", "")
	if len(r.secretPrompts) != 1 || r.secretPrompts[0] != "passphrase of the sealed store: " {
		t.Errorf("prompts %q", r.secretPrompts)
	}
	s.run("", "lock").want(t, 0, "daemon locked: no tokens until 'devpi-credd unlock'\n", "")
	s.run(fakePassphrase+"\n", "unlock", "--passphrase-stdin").want(t, 0, "daemon unlocked, its sealed store open\n", "")
	s.run("wrong\n", "lock")
	s.run("wrong\n", "unlock", "--passphrase-stdin").want(t, 1, "", "devpi-credd: wrong passphrase\n")
	s.wantRequests(`/v1/unlock {"passphrase":"`+fakePassphrase+`"}`, `/v1/lock {}`, `/v1/unlock {"passphrase":"`+fakePassphrase+`"}`,
		`/v1/lock {}`, `/v1/unlock {"passphrase":"wrong"}`)

	// No terminal, no --passphrase-stdin: one line saying what to do.
	s = newSession(t, &fakeDaemon{sealed: true})
	s.run("", "unlock").want(t, 1, "", "devpi-credd: the sealed store's passphrase is needed and there is no terminal to ask on: pass --passphrase-stdin and write it on standard input\n")
	s.wantRequests()

	// A daemon without a sealed store: the body it always took, nothing asked.
	s = newSession(t, &fakeDaemon{locked: true})
	r = s.run("", "unlock")
	r.want(t, 0, "daemon unlocked\n", "")
	if len(r.secretPrompts) != 0 {
		t.Errorf("asked %q", r.secretPrompts)
	}
	s.wantRequests(`/v1/unlock {}`)
}

func TestGetWithApproval(t *testing.T) {
	const upload = fakeRoot + "alice/dev/"
	// On a terminal: asked once, the token printed.
	s := newSession(t, &fakeDaemon{enrolled: true, uploads: true}).typing("123 456\n")
	r := s.run("", "get", upload)
	r.want(t, 0, "devpi-", "")
	if r.tty.String() != "devpi-credd: approve the upload to "+upload+": one-time code: " {
		t.Errorf("the terminal shows %q", r.tty)
	}
	s.wantRequests(`/v1/credentials {"url":"`+upload+`"}`, `/v1/credentials {"url":"`+upload+`","code":"`+codeNow+`"}`)

	// --code-stdin: the code goes with the first request.
	s = newSession(t, &fakeDaemon{enrolled: true, uploads: true})
	r = s.run(codeNow+"\n", "get", "--code-stdin", upload)
	r.want(t, 0, "devpi-", "")
	if r.tty != nil {
		t.Error("the terminal was opened")
	}
	s.wantRequests(`/v1/credentials {"url":"` + upload + `","code":"` + codeNow + `"}`)

	// No terminal: one line saying what to run.
	s = newSession(t, &fakeDaemon{enrolled: true, uploads: true})
	s.run("", "get", upload).want(t, 1, "", "devpi-credd: an upload to "+upload+" needs a one-time code and there is no terminal to ask on: run the upload under 'devpi-credd exec --approve -- ...' or use 'devpi-credd get --code-stdin "+upload+"'\n")

	// A wrong code: refused on the terminal and on stderr, not asked again.
	s = newSession(t, &fakeDaemon{enrolled: true, uploads: true}).typing("999999\n" + codeNow + "\n")
	r = s.run("", "get", upload)
	r.want(t, 1, "", "devpi-credd: the one-time code is wrong\n")
	if !strings.HasSuffix(r.tty.String(), "one-time code: devpi-credd: the one-time code is wrong\n") || r.tty.opened != 1 {
		t.Errorf("the terminal shows %q", r.tty)
	}
	if len(s.requests()) != 2 {
		t.Errorf("requests %q", s.requests())
	}

	// Reads never ask.
	s = newSession(t, &fakeDaemon{enrolled: true, uploads: true})
	s.run("", "get", upload+"+simple/").want(t, 0, "devpi-", "")
}

func TestDevpiLoginApprove(t *testing.T) {
	const session = `/v1/credentials {"url":"` + fakeRoot + `","ttl":"10h","session":true`
	s := newSession(t, &fakeDaemon{enrolled: true, uploads: true}).typing(codeNow + "\n")
	r := s.run("", "devpi-login", "--approve")
	r.want(t, 0, "devpi-client logged in as 'alice' at "+fakeRoot, "")
	if r.tty.String() != "devpi-credd: approve a devpi-client session that can upload to "+fakeRoot+": one-time code: " {
		t.Errorf("the terminal shows %q", r.tty)
	}
	s.run(codeNow+"\n", "devpi-login", "--code-stdin").want(t, 0, "devpi-client logged in", "")
	s.run("", "devpi-login").want(t, 0, "devpi-client logged in", "approval is on: this session cannot upload; 'devpi-credd devpi-login --approve' logs in with one that can\n")
	s.run("", "devpi-login", "--approve", "--code-stdin").want(t, 2, "", "not both")
	s.wantRequests(session+`,"code":"`+codeNow+`"}`, session+`,"code":"`+codeNow+`"}`, session+`}`)
}

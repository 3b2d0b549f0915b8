//go:build linux

// Command worm plays, in the e2e tests, a worm that runs as the
// developer's uid: a malicious install script with no terminal of its own
// and without the person's authenticator. It is built by the test bed and
// run with setpriv; it is never shipped. Each phase prints a JSON report
// (wormapi.Report) on standard output, which the test asserts on:
//
//	worm scan PLAN    read every file, environ, cmdline and process memory it
//	                  can, try every token found for an upload; ptrace and
//	                  gcore the daemon (and a control process)
//	worm codes PLAN   ask for upload tokens with no code, the spent code and
//	                  wrong codes, through every path there is
//	worm pip PLAN     pip install through the keyring link, no terminal
//	worm config PLAN  edit the config to turn approval off; in personal mode
//	                  kill the daemon and start a new one
//	worm after PLAN   what a restarted (and unlocked) daemon gives
//	worm upload PLAN  upload with the token on stdin (the test's control)
//	worm child PLAN   inside 'devpi-credd exec': print what the job gives
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
	"github.com/devpi-credd/devpi-credd/localapi"
)

type worm struct {
	plan     wormapi.Plan
	planPath string
	self     string
	rep      *wormapi.Report
	col      *collector
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: worm scan|codes|pip|config|after|upload|child PLAN")
		os.Exit(2)
	}
	w := &worm{planPath: os.Args[2], rep: &wormapi.Report{Phase: os.Args[1]}, col: newCollector()}
	data, err := os.ReadFile(w.planPath)
	if err == nil {
		err = json.Unmarshal(data, &w.plan)
	}
	if err == nil {
		w.self, err = os.Executable()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worm:", err)
		os.Exit(2)
	}
	switch w.rep.Phase {
	case "scan":
		w.scan()
	case "codes":
		w.codes()
	case "pip":
		w.pip()
	case "config":
		w.config()
	case "after":
		w.after()
	case "upload":
		w.uploadControl()
	case "child":
		w.child()
		return
	default:
		fmt.Fprintln(os.Stderr, "worm: unknown phase", w.rep.Phase)
		os.Exit(2)
	}
	w.tryAll()
	for _, fp := range w.col.order {
		w.rep.Found = append(w.rep.Found, *w.col.found[fp])
	}
	if err := json.NewEncoder(os.Stdout).Encode(w.rep); err != nil {
		os.Exit(1)
	}
}

// fail notes the worm's own failure: the test fails on it.
func (w *worm) fail(format string, args ...any) {
	w.rep.Errors = append(w.rep.Errors, fmt.Sprintf(format, args...))
}

// scan: (a) every file, environ, cmdline and memory it can read; (c)
// ptrace and gcore of the daemon, and of the control process, where they
// must work.
func (w *worm) scan() {
	p := w.plan
	w.probeOpen("read daemon mem", p.DaemonPID, "mem")
	w.probeOpen("read daemon environ", p.DaemonPID, "environ")
	w.probeOpen("read control mem", p.ControlPID, "mem")
	w.scanFiles(p.Roots)
	w.scanProcs()
	w.probePtrace("ptrace daemon", p.DaemonPID)
	w.probePtrace("ptrace control", p.ControlPID)
	w.probeGcore("gcore daemon", p.DaemonPID)
	w.probeGcore("gcore control", p.ControlPID)
}

// codes: (d) every path to an upload token, with the person's spent
// code first (while it is still within the window), then with none,
// then with wrong codes, more than the five that start the backoff.
func (w *worm) codes() {
	p := w.plan
	authJSON := filepath.Join(os.Getenv("HOME"), ".devpi", "client", "auth.json")
	if d := os.Getenv("DEVPI_CLIENTDIR"); d != "" {
		authJSON = filepath.Join(d, "auth.json")
	}
	child := []string{"--", w.self, "child", w.planPath}
	withCode := func(kind, code string) {
		w.attempt(call{path: "keyring helper on a terminal", code: kind, argv: []string{p.Keyring, "get", p.IndexURL, p.User}, tty: true, answer: code})
		w.attempt(call{path: "get --code-stdin", code: kind, argv: []string{p.Bin, "get", "--code-stdin", p.IndexURL}, stdin: code + "\n"})
		w.attempt(call{path: "devpi-login --code-stdin", code: kind, argv: []string{p.Bin, "devpi-login", "--code-stdin", "--server", p.Server}, stdin: code + "\n", files: []string{authJSON}})
		w.attempt(call{path: "exec --approve --code-stdin --server", code: kind, argv: append([]string{p.Bin, "exec", "--approve", "--code-stdin", "--server", p.Server}, child...), stdin: code + "\n"})
		w.rawAttempt("raw /v1/credentials", kind, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL, Code: code})
	}
	if p.Spent != "" {
		withCode(wormapi.CodeSpent, p.Spent)
	}

	none := wormapi.CodeNone
	w.attempt(call{path: "keyring helper", code: none, argv: []string{p.Keyring, "get", p.IndexURL, p.User}})
	w.attempt(call{path: "devpi-credd keyring get", code: none, argv: []string{p.Bin, "keyring", "get", p.IndexURL, p.User}})
	w.attempt(call{path: "python keyring backend", code: none, argv: []string{p.PyKeyring, "get", p.IndexURL, p.User}})
	w.attempt(call{path: "get", code: none, argv: []string{p.Bin, "get", p.IndexURL}})
	w.attempt(call{path: "devpi-login", code: none, argv: []string{p.Bin, "devpi-login", "--server", p.Server}, files: []string{authJSON}})
	w.attempt(call{path: "exec --server", code: none, argv: append([]string{p.Bin, "exec", "--server", p.Server}, child...)})
	w.attempt(call{path: "env --server", code: none, argv: []string{p.Bin, "env", "--server", p.Server, "-i", p.Index, "--format", "dotenv"}})
	w.rawAttempt("raw /v1/credentials", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL})
	w.rawAttempt("raw /v1/credentials session", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL, Session: true})

	wrong := func() string {
		if len(w.plan.Wrong) == 0 {
			w.fail("the plan has too few wrong codes")
			return "000000"
		}
		c := w.plan.Wrong[0]
		w.plan.Wrong = w.plan.Wrong[1:]
		return c
	}
	withCode(wormapi.CodeWrong, wrong())
	kind := wormapi.CodeWrong
	w.attempt(call{path: "python keyring backend on a terminal", code: kind, argv: []string{p.PyKeyring, "get", p.IndexURL, p.User}, tty: true, answer: wrong()})
	w.rawAttempt("raw /v1/credentials session", kind, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL, Session: true, Code: wrong()})
	w.rawAttempt("raw /v1/approval/begin", kind, localapi.PathApprovalBegin, localapi.ApprovalBegin{Code: wrong()})
	w.rawAttempt("raw /v1/approval/off", kind, localapi.PathApprovalOff, localapi.ApprovalOff{Code: wrong()})
	// A personal daemon's store is re-sealed with the passphrase: the
	// worm guesses one, so that the code reaches the daemon.
	off := call{path: "approval off --code-stdin", code: kind, argv: []string{p.Bin, "approval", "off", "--code-stdin"}, stdin: wrong() + "\n"}
	if p.Personal {
		off.argv = append(off.argv, "--passphrase-stdin")
		off.stdin = "a guessed passphrase\n" + off.stdin
	}
	w.attempt(off)
}

// child runs inside 'devpi-credd exec': it prints everything the job
// gives it that could hold a token, for the worm outside to collect.
func (w *worm) child() {
	for _, kv := range os.Environ() {
		fmt.Println(kv)
	}
	if sock := os.Getenv("DEVPI_CREDD_SOCKET"); sock != "" {
		for _, req := range []localapi.CredentialsRequest{{URL: w.plan.IndexURL}, {URL: w.plan.IndexURL, Session: true}} {
			status, data, err := w.raw(sock, "POST", localapi.PathCredentials, req)
			fmt.Printf("job daemon %+v: %d %v %s\n", req, status, err, data)
		}
	}
	if d := os.Getenv("DEVPI_CLIENTDIR"); d != "" {
		data, _ := os.ReadFile(filepath.Join(d, "auth.json"))
		fmt.Printf("auth.json: %s\n", data)
	}
}

// pip: (f) read tokens flow without anyone: pip installs from the
// read-protected index through the keyring link, with no terminal.
func (w *worm) pip() {
	p := w.plan
	w.attempt(call{path: "pip install", code: wormapi.CodeNone, argv: []string{p.Python, "-m", "pip", "install",
		"--disable-pip-version-check", "--no-cache-dir", "--no-input", "--keyring-provider", "subprocess",
		"--index-url", p.SimpleURL, "--target", filepath.Join(p.Dir, "pip-target"), p.Package}})
}

// configEdits are what a worm might write to turn approval off: keys
// invented, since approval is not in the config at all.
var configEdits = []struct{ head, tail string }{
	{head: "approval = false\napprove_with = \"none\"\nrequire_code = false\nupload_approval = false\n"},
	{tail: "\n[approval]\nuploads = false\nenabled = false\nupload_ttl = \"24h\"\n"},
}

// config: (e) edit the config to turn approval off; ask for an upload
// token without a code meanwhile. In personal mode, kill the daemon and
// start a new one (with the edited config, and if that does not start,
// with the original); in system mode, try to kill the daemon.
func (w *worm) config() {
	p := w.plan
	orig, _ := os.ReadFile(p.Config)
	for i, e := range configEdits {
		if err := os.MkdirAll(filepath.Dir(p.Config), 0o700); err != nil {
			w.fail("config dir: %v", err)
		}
		if err := os.WriteFile(p.Config, []byte(e.head+string(orig)+e.tail), 0o600); err != nil {
			w.fail("editing the config: %v", err)
			return
		}
		// The daemon reloads a changed config within a second or two:
		// ask over that time.
		path := fmt.Sprintf("raw /v1/credentials after config edit %d", i+1)
		for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
			if a := w.rawAttempt(path, wormapi.CodeNone, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL}); a.Tokens > 0 {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		w.attempt(call{path: fmt.Sprintf("get after config edit %d", i+1), code: wormapi.CodeNone, argv: []string{p.Bin, "get", p.IndexURL}})
	}
	if !p.Personal {
		w.probe("kill daemon", p.DaemonPID, unix.Kill(p.DaemonPID, syscall.SIGKILL))
		_ = os.WriteFile(p.Config, orig, 0o600)
		return
	}
	// Personal: the daemon is the worm's own uid's process.
	w.probe("kill daemon", p.DaemonPID, unix.Kill(p.DaemonPID, syscall.SIGKILL))
	w.waitGone()
	if !w.startDaemon("serve with the edited config") {
		_ = os.WriteFile(p.Config, orig, 0o600)
		if !w.startDaemon("serve with the original config") {
			w.fail("no new daemon started")
			return
		}
	}
	w.sealedAsks()
}

// waitGone waits until the killed daemon's socket no longer answers.
func (w *worm) waitGone() {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, _, err := w.raw(w.plan.Socket, "GET", localapi.PathStatus, nil); err != nil {
			return
		}
	}
	w.fail("the killed daemon still answers")
}

// startDaemon starts 'devpi-credd serve' in a session of its own, to
// outlive the worm, and waits until it answers; path names the attempt.
func (w *worm) startDaemon(path string) bool {
	logPath := filepath.Join(w.plan.Dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		w.fail("daemon log: %v", err)
		return false
	}
	defer logf.Close()
	cmd := exec.Command(w.plan.Bin, "serve", "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = w.plan.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	a := wormapi.Attempt{Path: path, Code: wormapi.CodeNone}
	defer func() { w.rep.Attempts = append(w.rep.Attempts, a) }()
	if err := cmd.Start(); err != nil {
		a.Exit, a.Said = -1, err.Error()
		return false
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			a.Exit = cmd.ProcessState.ExitCode()
			data, _ := os.ReadFile(logPath)
			a.Said = lastLines(string(data))
			return false
		default:
		}
		if status, data, err := w.raw(w.plan.Socket, "GET", localapi.PathStatus, nil); err == nil && status == 200 {
			w.rep.NewDaemonPID = cmd.Process.Pid
			w.rep.Status = string(data)
			return true
		}
	}
	a.Exit, a.Said = -1, "did not answer within 30 s"
	w.rep.NewDaemonPID = cmd.Process.Pid // for the test to stop
	return false
}

// sealedAsks: what the new daemon gives before anyone unlocks it.
func (w *worm) sealedAsks() {
	p := w.plan
	none := wormapi.CodeNone
	w.rawAttempt("raw /v1/credentials read, new daemon", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.SimpleURL})
	w.rawAttempt("raw /v1/credentials, new daemon", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL})
	w.rawAttempt("raw /v1/credentials session, new daemon", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL, Session: true})
	w.attempt(call{path: "get read, new daemon", code: none, argv: []string{p.Bin, "get", p.SimpleURL}})
	w.rawAttempt("raw /v1/approval/begin, new daemon", none, localapi.PathApprovalBegin, localapi.ApprovalBegin{})
	w.attempt(call{path: "approval setup, new daemon", code: none, argv: []string{p.Bin, "approval", "setup"}})
}

// after: the daemon the person unlocked again: approval is still on, and
// setting up a new authenticator needs a code.
func (w *worm) after() {
	p := w.plan
	none := wormapi.CodeNone
	if status, data, err := w.raw(p.Socket, "GET", localapi.PathStatus, nil); err != nil || status != 200 {
		w.fail("status: %d %v", status, err)
	} else {
		w.rep.Status = string(data)
	}
	w.attempt(call{path: "approval setup", code: none, argv: []string{p.Bin, "approval", "setup"}})
	setup := call{path: "approval setup --code-stdin", code: none, argv: []string{p.Bin, "approval", "setup", "--code-stdin"}, stdin: "\n"}
	if p.Personal {
		setup.argv = append(setup.argv, "--passphrase-stdin")
		setup.stdin = "a guessed passphrase\n" + setup.stdin
	}
	w.attempt(setup)
	w.rawAttempt("raw /v1/approval/begin", none, localapi.PathApprovalBegin, localapi.ApprovalBegin{})
	w.rawAttempt("raw /v1/approval/off", none, localapi.PathApprovalOff, localapi.ApprovalOff{})
	w.rawAttempt("raw /v1/credentials", none, localapi.PathCredentials, localapi.CredentialsRequest{URL: p.IndexURL})
	w.attempt(call{path: "get", code: none, argv: []string{p.Bin, "get", p.IndexURL}})
}

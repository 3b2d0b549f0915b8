//go:build e2e && linux

package e2e

// Issue 16 end to end, with real uids: the person at a terminal (tmux)
// sets up one-time codes and publishes with them; then a worm running as
// the same uid, with no terminal and no code, reads everything it can
// and asks for upload tokens every way there is, and gets nothing that
// devpi-server takes for an upload. Both modes: a personal daemon of the
// developer's own uid with a sealed store, and a system daemon of its own
// uid set up by setup-system.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/e2e/worm/wormapi"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

const (
	wormProject = "worm-target"
	// wormVersion is what the worm tries to upload: never on the index.
	wormVersion = "6.6.6"
)

var (
	codePrompt       = regexp.MustCompile(`one-time code[^\n]*: `)
	passphrasePrompt = regexp.MustCompile(`passphrase[^\n]*: `)
	otpauthURI       = regexp.MustCompile(`(?m)^otpauth://\S+$`)
	printedToken     = regexp.MustCompile(`(?m)^devpi-\S+$`)
)

// approvalBed is one mode's setup: the developer, their daemon, the
// index the person publishes to, the person and what the worm is given.
type approvalBed struct {
	t        *testing.T
	d        *developer
	personal bool
	index    string // USER/INDEX
	server   string // the daemon's name of the server
	socket   string // the daemon's socket, for the worm's raw API
	// daemon is the daemon the test started (personal mode: until the
	// worm kills it), daemonPID the one running.
	daemon    *daemonProc
	daemonPID int
	auditPath string
	roots     []string     // what the worm reads besides $HOME and /tmp
	root      *token.Token // the long-lived token, which must be out of reach
	person    person
	worm      wormTarget
}

// person is the person at the terminal: their authenticator and
// passphrase, and the code they used last before the worm's codes.
type person struct {
	term       *terminal
	auth       *authenticator
	passphrase string
	spent      string
}

// wormTarget is what the worm works with: its directory and wheel, and
// the read tokens planted for it to find, some in the control process (a
// dumpable process of the developer's).
type wormTarget struct {
	dir     string
	wheel   string
	control *exec.Cmd
	planted []plantedToken
}

type plantedToken struct {
	tok    *token.Token
	source string // the source the worm must report it under
	what   string
}

func newApprovalBed(t *testing.T, d *developer, personal bool) *approvalBed {
	b := &approvalBed{t: t, d: d, personal: personal, server: "locked", worm: wormTarget{dir: filepath.Join(d.home, "worm")}}
	b.index = d.u.newIndex(t, "dev")
	d.mkdir(t, b.worm.dir)
	b.worm.wheel = d.wheel(t, wormProject, wormVersion)
	return b
}

// status is the daemon's status as the developer's devpi-credd shows it.
func (b *approvalBed) status(t *testing.T) (*localapi.Status, result) {
	t.Helper()
	r := b.d.run(t, nil, "", bed.bin, "status", "--json")
	if r.code != 0 {
		return nil, r
	}
	var st localapi.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, r)
	}
	return &st, r
}

// waitStatus polls the status until cond holds.
func (b *approvalBed) waitStatus(t *testing.T, what string, cond func(*localapi.Status) bool) *localapi.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, r := b.status(t)
		if st != nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			said := strings.TrimSpace(r.stderr)
			if st != nil {
				said = statusLine(st)
			}
			logs := ""
			if b.daemon != nil {
				logs = tail(b.daemon.logs.String(), 20)
			}
			t.Fatalf("%s: not within 30 s; status: %s\n%s", what, said, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killed waits for the daemon the worm killed to be reaped, and marks it
// stopped: a SIGKILL leaves its socket behind, for the next one to take.
func (p *daemonProc) killed(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("the daemon the worm killed (pid %d) is still running", p.cmd.Process.Pid)
	}
	p.done = nil
}

// statusLine is what the tests look at in a status.
func statusLine(st *localapi.Status) string {
	var servers []string
	for _, s := range st.Servers {
		servers = append(servers, fmt.Sprintf("%s (token %q%s)", s.Name, s.TokenID, s.Error))
	}
	return fmt.Sprintf("sealed %v, opened %v, locked %v, servers %v, approval %+v, hardening %q", st.Sealed, st.Opened, st.Locked, servers, st.Approval, st.Hardening)
}

// noRootToken: the daemon holds no root token of any server.
func noRootToken(st *localapi.Status) bool {
	for _, s := range st.Servers {
		if s.TokenID != "" {
			return false
		}
	}
	return true
}

func (b *approvalBed) typePassphrase() promptAnswer {
	return promptAnswer{re: passphrasePrompt, answer: func() string { return b.person.passphrase }}
}

func (b *approvalBed) typeCode(t *testing.T) promptAnswer {
	return promptAnswer{re: codePrompt, answer: func() string { return b.person.auth.code(t) }}
}

// tokenCreates lets one long-lived token be created at a time: devpi-
// tokens derives its key with argon2 (100 MiB, 8 lanes: seconds on two
// cores), and both modes' tests creating theirs at once on a loaded
// machine waited longer than the client does for an answer.
var tokenCreates sync.Mutex

func oneTokenCreate(create func()) {
	tokenCreates.Lock()
	defer tokenCreates.Unlock()
	create()
}

// newPersonalBed: the developer logs in, creates a long-lived token and
// seals it ('token login --seal', the passphrase typed at the prompt),
// removes the file and logs out; their daemon starts sealed, with no
// root token, until the person unlocks it.
func newPersonalBed(t *testing.T) *approvalBed {
	d := newDeveloper(t)
	b := newApprovalBed(t, d, true)
	b.person.passphrase = "correct horse " + d.name
	b.socket = filepath.Join(d.runtimeDir(), "devpi-credd", "socket")
	b.auditPath = d.auditPath()
	d.credd(t, 0, d.u.password+"\n", "login", "--url", bed.url, d.u.name, "--password-stdin")
	rootFile := filepath.Join(d.home, "root.token")
	oneTokenCreate(func() { d.credd(t, 0, "", "token", "create", "-o", rootFile) })
	b.root = parseToken(t, readFile(t, rootFile))
	b.person.term = newTerminal(t, d)
	s := b.person.term.run(fmt.Sprintf("devpi-credd token login --seal -f %s --url %s --name %s", rootFile, bed.locked, b.server))
	if code, out := s.prompts(time.Minute, b.typePassphrase()); code != 0 {
		t.Fatalf("token login --seal at the terminal: exit %d:\n%s", code, out)
	}
	must(t, os.Remove(rootFile))
	d.credd(t, 0, "", "logout")
	d.credd(t, 0, "", "keyring-link", d.linkDir)

	b.daemon = startProc(t, d.command(context.Background(), d.env(), bed.bin, "serve", "--log-format", "json", "--log-level", "debug"), b.socket)
	b.daemonPID = b.daemon.cmd.Process.Pid
	st := b.waitStatus(t, "the sealed daemon answers", func(*localapi.Status) bool { return true })
	if !st.Sealed || st.Opened || !noRootToken(st) {
		t.Fatalf("a daemon started on a sealed store: %s; want sealed, not opened, no root token", statusLine(st))
	}
	b.unlock(t)
	return b
}

// unlock: the person opens the sealed store at the terminal.
func (b *approvalBed) unlock(t *testing.T) {
	t.Helper()
	s := b.person.term.run("devpi-credd unlock")
	if code, out := s.prompts(time.Minute, b.typePassphrase()); code != 0 {
		t.Fatalf("unlock at the terminal: exit %d:\n%s", code, out)
	}
	b.waitStatus(t, "the store opened, the root token in the daemon", func(st *localapi.Status) bool { return st.Opened && !noRootToken(st) })
}

// enrol: the person runs 'approval setup', scans the URI it shows (the
// test reads it off the terminal) and types the first code.
func (b *approvalBed) enrol(t *testing.T) {
	t.Helper()
	s := b.person.term.run("devpi-credd approval setup")
	code, out := s.prompts(time.Minute, b.typePassphrase(), promptAnswer{re: codePrompt, answer: func() string {
		uri := otpauthURI.FindString(s.output())
		if uri == "" {
			t.Fatalf("approval setup asks for a code without showing an otpauth:// URI:\n%s", s.output())
		}
		b.person.auth = newAuthenticator(t, uri)
		return b.person.auth.code(t)
	}})
	if code != 0 || b.person.auth == nil {
		t.Fatalf("approval setup at the terminal: exit %d:\n%s", code, out)
	}
	if !strings.ContainsAny(out, "▀▄█") {
		t.Errorf("approval setup showed no QR code:\n%s", out)
	}
	st := b.waitStatus(t, "approval on", func(st *localapi.Status) bool { return st.Approval != nil })
	if a := st.Approval; !a.Enrolled || !a.Uploads {
		t.Fatalf("after approval setup: %+v, want enrolled with uploads needing a code", a)
	}
}

// onIndex reports whether version of the project is on the index.
func (b *approvalBed) onIndex(version string) bool {
	var got struct {
		Result map[string]any `json:"result"`
	}
	err := bed.api("GET", b.index+"/"+wormProject+"/"+version, "", nil, &got)
	return err == nil && got.Result != nil
}

// publish runs an upload at the terminal: it must prompt for a code
// once, take it, and upload.
func (b *approvalBed) publish(t *testing.T, tool, version, cmdline string) {
	t.Helper()
	s := b.person.term.run(cmdline)
	code, out := s.prompts(3*time.Minute, b.typeCode(t))
	if code != 0 {
		t.Fatalf("%s at the terminal: exit %d:\n%s", tool, code, out)
	}
	if n := len(codePrompt.FindAllString(out, -1)); n != 1 {
		t.Errorf("%s asked for a code %d times, want once:\n%s", tool, n, out)
	}
	if !b.onIndex(version) {
		t.Errorf("%s exited 0, but %s %s is not on %s", tool, wormProject, version, b.index)
	}
}

// getWithCode runs 'devpi-credd get --code-stdin' at the terminal, the
// person typing code; it returns the exit code and what it printed
// besides the typed code.
func (b *approvalBed) getWithCode(t *testing.T, code string) (int, string) {
	t.Helper()
	s := b.person.term.run("devpi-credd get --code-stdin " + bed.locked + b.index + "/")
	b.person.term.typeLine(code)
	exit, out := s.wait(time.Minute)
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && l != code {
			lines = append(lines, l)
		}
	}
	return exit, strings.Join(lines, "\n")
}

// publishes: what the person does at the terminal once approval is set
// up: twine and uv publish with a prompt each, and a wrong code refused
// in one line.
func (b *approvalBed) publishes(t *testing.T) {
	d := b.d
	upload := bed.locked + b.index + "/"
	b.publish(t, "twine upload", "1.0", fmt.Sprintf("%s upload --non-interactive --disable-progress-bar --repository-url %s %s",
		bed.py("client", "twine"), upload, d.wheel(t, wormProject, "1.0")))
	b.publish(t, "uv publish", "2.0", fmt.Sprintf("%s publish --keyring-provider subprocess --publish-url %s --username %s %s",
		bed.py("client", "uv"), upload, d.u.name, d.wheel(t, wormProject, "2.0")))
	exit, out := b.getWithCode(t, b.person.auth.wrongCodes(1)[0])
	if exit == 0 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "wrong one-time code") || printedToken.MatchString(out) {
		t.Errorf("get --code-stdin with a wrong code: exit %d, want one line saying the code is wrong and no token:\n%s", exit, out)
	}
}

// approvedGet: 'get --code-stdin' with a right code prints an upload
// token; the worm's own upload code uploads with it (so that the worm's
// refusals mean something), and the code is spent.
func (b *approvalBed) approvedGet(t *testing.T) {
	code := b.person.auth.code(t)
	exit, out := b.getWithCode(t, code)
	m := printedToken.FindString(out)
	if exit != 0 || m == "" {
		t.Fatalf("get --code-stdin with a right code: exit %d:\n%s", exit, out)
	}
	b.person.spent = code
	tok := parseToken(t, m)
	plan := b.plan()
	plan.Version, plan.Wheel = "3.0", b.d.wheel(t, wormProject, "3.0")
	rep := b.runWorm(t, "upload", plan, tok.Reveal())
	if len(rep.Found) != 1 || rep.Found[0].Upload.Status != 200 || !b.onIndex("3.0") {
		t.Fatalf("the worm's upload with the person's approved token (the control): %+v", rep.Found)
	}
	if exp := tok.Scope().Expires; exp == nil || time.Until(*exp) > 2*time.Minute+5*time.Second {
		t.Errorf("an approved token expires at %v, want at most 2 minutes from now", exp)
	}
}

// plant puts read tokens where a worm looks: a pip.conf in $HOME, a log
// in /tmp, and a running process of the developer's (the control) with
// one in its argv, one in its environment and one in its memory only.
func (b *approvalBed) plant(t *testing.T) {
	d := b.d
	read := func() *token.Token {
		r := d.run(t, nil, "", bed.bin, "get", "--ttl", "10m", bed.locked+b.index+"/+simple/")
		if r.code != 0 {
			t.Fatalf("a read token: %s", r)
		}
		return parseToken(t, r.stdout)
	}
	withToken := func(tok *token.Token) string {
		return strings.Replace(bed.locked, "http://", "http://"+d.u.name+":"+tok.Reveal()+"@", 1) + b.index + "/+simple/"
	}
	pipConf := filepath.Join(d.home, ".config", "pip", "pip.conf")
	d.mkdir(t, filepath.Dir(pipConf))
	inFile := read()
	d.writeFile(t, pipConf, "[global]\nindex-url = "+withToken(inFile)+"\n", 0o600)
	tmpLog := filepath.Join(os.TempDir(), d.name+"-build.log")
	inTmp := read()
	d.writeFile(t, tmpLog, "Looking in indexes: "+withToken(inTmp)+"\n", 0o600)
	b.t.Cleanup(func() { os.Remove(tmpLog) }) // the bed's: the phase's ends before the worm's

	inArgv, inEnv, inMem := read(), read(), read()
	ctx, cancel := context.WithCancel(context.Background())
	b.t.Cleanup(cancel)
	cmd := d.command(ctx, d.env("PIP_INDEX_URL="+withToken(inEnv)), bed.py("client", "python"), "-c",
		"import sys, time\nheld = sys.stdin.readline().strip()\nprint('ready', flush=True)\ntime.sleep(3600)\n", inArgv.Reveal())
	cmd.Stdin = strings.NewReader(inMem.Reveal() + "\n")
	var out lockedBuffer
	cmd.Stdout = &out
	must(t, cmd.Start())
	go func() { _ = cmd.Wait() }()
	waitUntil(t, 30*time.Second, "the control process", func() bool { return strings.Contains(out.String(), "ready") })
	b.worm.control = cmd
	pid := cmd.Process.Pid
	b.worm.planted = []plantedToken{
		{inFile, "file:" + pipConf, "a read token in pip.conf"},
		{inTmp, "file:" + tmpLog, "a read token in a log in /tmp"},
		{inArgv, fmt.Sprintf("cmdline:%d", pid), "a read token in a process's argv"},
		{inEnv, fmt.Sprintf("environ:%d", pid), "a read token in a process's environment"},
		{inMem, fmt.Sprintf("mem:%d", pid), "a read token in a process's memory only"},
	}
}

// plan is what the worm is told: where to look and what to try, no
// secret.
func (b *approvalBed) plan() wormapi.Plan {
	d := b.d
	controlPID := 0
	if b.worm.control != nil {
		controlPID = b.worm.control.Process.Pid
	}
	gcore, _ := exec.LookPath("gcore")
	return wormapi.Plan{
		Dir: b.worm.dir, Roots: append([]string{d.home, os.TempDir(), d.runtimeDir(), filepath.Join(d.home, ".config")}, b.roots...),
		UploadURL: bed.url + b.index + "/", Wheel: b.worm.wheel, Project: wormProject, Version: wormVersion,
		IndexURL: bed.locked + b.index + "/", Index: b.index, SimpleURL: bed.locked + b.index + "/+simple/", Package: wormProject,
		DaemonPID: b.daemonPID, ControlPID: controlPID,
		Bin: bed.bin, Keyring: filepath.Join(filepath.Dir(bed.bin), "devpi-credd-keyring"),
		PyKeyring: bed.py("client", "keyring"), Python: bed.py("client", "python"), Gcore: gcore,
		LinkDir: d.linkDir, Server: b.server, Socket: b.socket, User: d.u.name, Config: d.configPath(), Personal: b.personal,
	}
}

// worm runs a phase of the worm as the developer: setpriv, its own
// session (no terminal), stdin as given (else /dev/null).
func (b *approvalBed) runWorm(t *testing.T, phase string, plan wormapi.Plan, stdin string) *wormapi.Report {
	t.Helper()
	data, err := json.Marshal(plan)
	must(t, err)
	planPath := filepath.Join(b.worm.dir, "plan-"+phase+".json")
	b.d.writeFile(t, planPath, string(data), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := b.d.command(ctx, b.d.env(), bed.worm, phase, planPath)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("worm %s: %v\n%s", phase, err, stderr.String())
	}
	var rep wormapi.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("worm %s's report: %v: %s", phase, err, stdout.String())
	}
	refused := 0
	for _, f := range rep.Found {
		if f.Upload.Refused() {
			refused++
		}
	}
	t.Logf("worm %s took %s: %d files, %d environs, %d cmdlines, %d memories (%d MiB) read; %d tokens found and tried, %d refused by devpi-server; %d attempts",
		phase, time.Since(start).Round(time.Millisecond), rep.Files, rep.Environs, rep.Cmdlines, rep.Mems, rep.MemBytes>>20, len(rep.Found), refused, len(rep.Attempts))
	for _, a := range rep.Attempts {
		t.Logf("  %s (%s code): %d, %d tokens, %q", a.Path, a.Code, a.Exit, a.Tokens, a.Said)
	}
	for _, e := range rep.Errors {
		t.Errorf("worm %s failed itself: %s", phase, e)
	}
	return &rep
}

// nothingUploads: devpi-server refused an upload with every token the
// worm came across.
func (b *approvalBed) nothingUploads(t *testing.T, rep *wormapi.Report) {
	t.Helper()
	for _, f := range rep.Found {
		if !f.Upload.Refused() {
			t.Errorf("worm %s: a token of %s (id %s, caveats %q), found at %v, was not refused for an upload: status %d %s %s",
				rep.Phase, f.User, f.ID, f.Caveats, f.Sources, f.Upload.Status, f.Upload.Body, f.Upload.Err)
		}
		if b.root != nil && f.ID == b.root.ID() && len(f.Caveats) == len(b.root.Caveats()) {
			t.Errorf("worm %s: the long-lived token itself was found at %v", rep.Phase, f.Sources)
		}
	}
	if b.onIndex(wormVersion) {
		t.Errorf("worm %s: %s %s, which only the worm uploads, is on %s", rep.Phase, wormProject, wormVersion, b.index)
	}
}

// probe wants the worm's probe name to have come out as ok.
func probe(t *testing.T, rep *wormapi.Report, name string, ok bool) {
	t.Helper()
	p, found := rep.Probe(name)
	switch {
	case !found:
		t.Errorf("worm %s did not try %q", rep.Phase, name)
	case p.OK != ok && ok:
		t.Errorf("worm %s: %q (pid %d) failed, so the test proves nothing: %s", rep.Phase, name, p.PID, p.Detail)
	case p.OK != ok:
		t.Errorf("worm %s: %q (pid %d) worked; it must not", rep.Phase, name, p.PID)
	}
}

// scan: (a) the worm reads what it can and finds the planted read
// tokens, (b) none of what it finds uploads, (c) the daemon cannot be
// read, traced or dumped, while the control process can.
func (b *approvalBed) scan(t *testing.T) {
	rep := b.runWorm(t, "scan", b.plan(), "")
	if rep.Files == 0 || rep.Mems == 0 {
		t.Errorf("the worm read %d files and %d process memories", rep.Files, rep.Mems)
	}
	for _, p := range b.worm.planted {
		fp := tokenFingerprint(p.tok)
		i := slices.IndexFunc(rep.Found, func(f wormapi.Found) bool { return f.Fingerprint == fp })
		if i < 0 || !slices.Contains(rep.Found[i].Sources, p.source) {
			t.Errorf("the worm did not find %s at %s: the scan does not work", p.what, p.source)
		}
	}
	b.nothingUploads(t, rep)
	probe(t, rep, "read control mem", true)
	probe(t, rep, "ptrace control", true)
	probe(t, rep, "gcore control", true)
	probe(t, rep, "read daemon mem", false)
	probe(t, rep, "read daemon environ", false)
	probe(t, rep, "ptrace daemon", false)
	probe(t, rep, "gcore daemon", false)
}

// pip: (f) read tokens flow with no one there.
func (b *approvalBed) pip(t *testing.T) {
	rep := b.runWorm(t, "pip", b.plan(), "")
	if len(rep.Attempts) != 1 || rep.Attempts[0].Exit != 0 {
		t.Errorf("pip install through the keyring link, no terminal: %+v", rep.Attempts)
	}
	if _, err := os.Stat(filepath.Join(b.worm.dir, "pip-target", "worm_target", "__init__.py")); err != nil {
		t.Errorf("pip did not install %s: %v", wormProject, err)
	}
	b.nothingUploads(t, rep)
}

// refusedOutright: the attempts that must be refused by the daemon (an
// upload token asked for, with no code or a bad one); the others (a
// session, a job) may give something, which must not upload.
func refusedOutright(a wormapi.Attempt) bool {
	if a.Code != wormapi.CodeNone {
		return true
	}
	switch a.Path {
	case "devpi-login", "exec --server", "raw /v1/credentials session":
		return false
	}
	return true
}

// refusals counts the audit log's lines of the developer's uid from line
// mark on that are not mints (nor the person's lock and unlock):
// refusals, a refuse_summary counting for the refusals it sums up.
func (b *approvalBed) refusals(t *testing.T, mark int) (n int, lines []auditLine) {
	lines = readAudit(t, b.auditPath)[mark:]
	for _, l := range lines {
		if l.Peer.UID != b.d.uid {
			continue
		}
		switch l.Event {
		case "mint", "lock", "unlock":
		case "refuse_summary":
			n += l.Count
		default:
			n++
		}
	}
	return n, lines
}

// reachesDaemon: an attempt that cannot be decided without the daemon
// (env --server may fail on its own, finding no token to read).
func reachesDaemon(a wormapi.Attempt) bool { return refusedOutright(a) && a.Path != "env --server" }

// canWrite: a mint whose caveats let it upload or change the server.
func canWrite(l auditLine) bool {
	for _, c := range l.Caveats {
		if perms, ok := strings.CutPrefix(c, "allowed="); ok {
			for p := range strings.SplitSeq(perms, ",") {
				if p != "pkg_read" && p != "toxresult_upload" {
					return true
				}
			}
			return false
		}
	}
	return true // no allowed= caveat: everything the root token can
}

// codes: (d) every path to an upload token, with the spent code, with
// none and with wrong ones: nothing uploads; after the fifth wrong code
// even the person's right one is refused; every attempt is audited.
func (b *approvalBed) codes(t *testing.T) {
	if b.person.spent == "" {
		t.Fatal("needs the person's approved get, which failed")
	}
	mark := len(readAudit(t, b.auditPath))
	plan := b.plan()
	plan.Spent, plan.Wrong = b.person.spent, b.person.auth.wrongCodes(16)
	rep := b.runWorm(t, "codes", plan, "")
	b.nothingUploads(t, rep)
	refused, audited := 0, 0
	for _, a := range rep.Attempts {
		if reachesDaemon(a) {
			audited++
		}
		if !refusedOutright(a) {
			continue
		}
		refused++
		raw := strings.HasPrefix(a.Path, "raw ")
		if (raw && a.Exit < 400) || (!raw && a.Exit == 0) || a.Tokens > 0 {
			t.Errorf("%s with %s code: exit/status %d and %d tokens, want refused: %s", a.Path, a.Code, a.Exit, a.Tokens, a.Said)
		}
		if raw && a.Path == "raw /v1/credentials" {
			wantStatus := map[string]int{wormapi.CodeNone: 401, wormapi.CodeWrong: 403, wormapi.CodeSpent: 403}[a.Code]
			if a.Exit != wantStatus {
				t.Errorf("%s with %s code: status %d, want %d: %s", a.Path, a.Code, a.Exit, wantStatus, a.Said)
			}
		}
		if strings.HasSuffix(a.Path, "on a terminal") && !a.Prompted {
			t.Errorf("%s with %s code: no prompt for a code on the worm's terminal, so no code was sent: %s", a.Path, a.Code, a.Said)
		}
	}
	if refused < 20 {
		t.Errorf("the worm made %d attempts that must be refused, want at least 20: %+v", refused, rep.Attempts)
	}

	// The person's right code now: refused for the backoff.
	exit, out := b.getWithCode(t, b.person.auth.code(t))
	if exit == 0 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "refused until") {
		t.Errorf("the person's right code after the worm's wrong ones: exit %d, want one line saying codes are refused until a time:\n%s", exit, out)
	}
	if st, r := b.status(t); st == nil || st.Approval == nil || st.Approval.Failures < 5 || time.Unix(st.Approval.BlockedUntil, 0).Before(time.Now()) {
		said := r.stderr
		if st != nil {
			said = statusLine(st)
		}
		t.Errorf("status after the worm's wrong codes: %s; want 5 failures or more and a block", said)
	}

	// Every attempt is in the audit log (a flood of refusals is summed up
	// there every 10 s), and no upload token was minted.
	var n int
	var lines []auditLine
	deadline := time.Now().Add(15 * time.Second)
	for n, lines = b.refusals(t, mark); n < audited && time.Now().Before(deadline); n, lines = b.refusals(t, mark) {
		time.Sleep(200 * time.Millisecond)
	}
	if n < audited {
		t.Errorf("the audit log has %d refusals of uid %d for the worm's %d attempts that reach the daemon:\n%+v", n, b.d.uid, audited, lines)
	}
	for _, l := range lines {
		if l.Event == "mint" && canWrite(l) {
			t.Errorf("the daemon minted a token that can write during the worm's attempts: %+v", l)
		}
	}
}

// config: (e) the worm edits the config to turn approval off; in
// personal mode it kills the daemon and starts a new one, which holds no
// root token until the person unlocks it; approval stays on and a new
// authenticator needs a code.
func (b *approvalBed) config(t *testing.T) {
	rep := b.runWorm(t, "config", b.plan(), "")
	b.nothingUploads(t, rep)
	for _, a := range rep.Attempts {
		if strings.HasPrefix(a.Path, "serve with") {
			continue
		}
		raw := strings.HasPrefix(a.Path, "raw ")
		if (raw && a.Exit < 400) || (!raw && a.Exit == 0) || a.Tokens > 0 {
			t.Errorf("%s: exit/status %d and %d tokens, want refused: %s", a.Path, a.Exit, a.Tokens, a.Said)
		}
	}
	if !b.personal {
		probe(t, rep, "kill daemon", false)
		b.waitStatus(t, "the system daemon still serving", func(*localapi.Status) bool { return true })
	} else {
		probe(t, rep, "kill daemon", true)
		b.daemon.killed(t)
		if rep.NewDaemonPID == 0 {
			t.Fatalf("the worm started no new daemon: %+v", rep.Attempts)
		}
		pid := rep.NewDaemonPID
		b.t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // the developer's, started by this test's worm
		b.daemonPID = pid
		var st localapi.Status
		must(t, json.Unmarshal([]byte(rep.Status), &st))
		if !st.Sealed || st.Opened || !noRootToken(&st) {
			t.Errorf("the worm's new daemon: %s; want sealed with no root token", statusLine(&st))
		}
		b.unlock(t)
	}
	after := b.runWorm(t, "after", b.plan(), "")
	b.nothingUploads(t, after)
	var st localapi.Status
	if err := json.Unmarshal([]byte(after.Status), &st); err != nil || st.Approval == nil || !st.Approval.Uploads || !st.Approval.Enrolled {
		t.Errorf("approval after the worm's config edits: %+v (%v), want on and enrolled", st.Approval, err)
	}
	for _, a := range after.Attempts {
		raw := strings.HasPrefix(a.Path, "raw ")
		if (raw && a.Exit < 400) || (!raw && a.Exit == 0) || a.Tokens > 0 {
			t.Errorf("after the edits, %s: exit/status %d and %d tokens, want refused: %s", a.Path, a.Exit, a.Tokens, a.Said)
		}
		if a.Path == "raw /v1/credentials" && a.Exit != 401 {
			t.Errorf("after the edits, an upload token without a code: status %d, want 401 (approval required): %s", a.Exit, a.Said)
		}
	}
}

// tokenFingerprint is the worm's fingerprint of tok.
func tokenFingerprint(tok *token.Token) string {
	return wormapi.Fingerprint(tok.Signature())
}

// run runs the person's and the worm's phases in order; a phase that
// fails does not stop the next (each says what it needs).
func (b *approvalBed) run(t *testing.T) {
	b.enrol(t)
	for _, p := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"person", b.publishes},
		{"plant", b.plant},
		{"worm scan", b.scan},
		{"worm pip", b.pip},
		{"person approves a get", b.approvedGet},
		{"worm codes", b.codes},
		{"worm config", b.config},
	} {
		t.Run(p.name, p.fn)
	}
}

// TestPersonAndWormSealed: personal mode, a sealed store.
func TestPersonAndWormSealed(t *testing.T) {
	needRoot(t)
	t.Parallel()
	newPersonalBed(t).run(t)
}

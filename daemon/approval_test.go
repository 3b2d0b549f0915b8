package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// clock is a time a test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// approvalBed is a daemon with a state directory (where the sealed store
// or the approval file is), answered through its handler with the peer a
// test chooses.
type approvalBed struct {
	t        *testing.T
	dir      string
	state    string
	config   string
	audit    string
	clock    *clock
	d        *Daemon
	owner    Peer
	person   Peer // an allow_uids uid with the approval grant (system mode)
	stranger Peer
}

const approvalServer = "http://devpi.test/"

// newApprovalBed writes a config whose server's token is tokenFile ("":
// none), with the person in allow_uids, and starts a daemon on it at a
// fixed time (the middle of a TOTP step).
func newApprovalBed(t *testing.T, root *token.Token) *approvalBed {
	t.Helper()
	dir := t.TempDir()
	b := &approvalBed{t: t, dir: dir, state: filepath.Join(dir, "state"), config: filepath.Join(dir, "config.toml"),
		audit: filepath.Join(dir, "state", "audit.log"), clock: &clock{t: time.Unix(1_900_000_015, 0)},
		owner:    Peer{UID: os.Getuid(), PID: 10, Known: true},
		person:   Peer{UID: os.Getuid() + 4242, PID: 11, Known: true},
		stranger: Peer{UID: os.Getuid() + 4343, PID: 12, Known: true}}
	if err := os.MkdirAll(b.state, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "local.token")
	if root != nil {
		writeToken(t, tokenFile, root)
	}
	extra := `allow_uids = [` + itoa(b.person.UID) + `]
shared_socket = "` + filepath.Join(dir, "shared", "s") + `"
allow_uids_grant = ["session", "lock", "approval"]
`
	text := "socket = " + quote(filepath.Join(dir, "run", "s")) + "\naudit_log = " + quote(b.audit) + "\n" + extra +
		"\n[servers.local]\nurl = " + quote(approvalServer) + "\ntoken_file = " + quote(tokenFile) + "\n"
	if err := os.WriteFile(b.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	return b
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// start makes a new daemon on the bed's files (a restart).
func (b *approvalBed) start() {
	b.t.Helper()
	if b.d != nil {
		b.d.Close()
	}
	d, err := New(Options{ConfigPath: b.config, Getenv: func(string) string { return "" }, Now: b.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StateDir: b.state, SealWorkFactor: 10})
	if err != nil {
		b.t.Fatal(err)
	}
	b.d = d
	b.t.Cleanup(func() { d.Close() })
}

// call sends body to path as peer and decodes a 200 answer into out.
func (b *approvalBed) call(peer Peer, path string, body any, out any) (int, localapi.Error) {
	b.t.Helper()
	data, _ := json.Marshal(body)
	req := httptest.NewRequest("POST", path, strings.NewReader(string(data)))
	req = req.WithContext(context.WithValue(req.Context(), peerKey{}, peer))
	rec := httptest.NewRecorder()
	b.d.Handler().ServeHTTP(rec, req)
	var e localapi.Error
	if rec.Code != http.StatusOK {
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			b.t.Fatal(err)
		}
	}
	return rec.Code, e
}

// mint asks for a token as peer.
func (b *approvalBed) mint(peer Peer, req localapi.CredentialsRequest) (*localapi.Credentials, int, localapi.Error) {
	b.t.Helper()
	var c localapi.Credentials
	status, e := b.call(peer, localapi.PathCredentials, req, &c)
	if status != http.StatusOK {
		return nil, status, e
	}
	return &c, status, e
}

func (b *approvalBed) status() localapi.Status { return b.d.Status() }

// enrol sets up an authenticator as peer and returns its secret.
func (b *approvalBed) enrol(peer Peer, current, passphrase string) []byte {
	b.t.Helper()
	var e localapi.ApprovalEnrollment
	if status, aerr := b.call(peer, localapi.PathApprovalBegin, localapi.ApprovalBegin{Code: current}, &e); status != http.StatusOK {
		b.t.Fatalf("begin: %d %+v", status, aerr)
	}
	secret, err := approval.ParseURI(e.URI)
	if err != nil {
		b.t.Fatal(err)
	}
	if status, aerr := b.call(peer, localapi.PathApprovalConfirm, localapi.ApprovalConfirm{ID: e.ID, Code: approval.Code(secret, b.clock.Now()), Passphrase: passphrase}, nil); status != http.StatusOK {
		b.t.Fatalf("confirm: %d %+v", status, aerr)
	}
	return secret
}

// caveats of a minted token, by key.
func caveatsOf(t *testing.T, c *localapi.Credentials) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, cv := range c.Caveats {
		k, v, _ := strings.Cut(cv, "=")
		out[k] = v
	}
	return out
}

func (b *approvalBed) auditLines(event string) []string {
	b.t.Helper()
	data, err := os.ReadFile(b.audit)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, `"event":"`+event+`"`) {
			out = append(out, l)
		}
	}
	return out
}

const uploadURL = approvalServer + "alice/dev/"

// System mode: the approval lives in the daemon's own file; the person is
// an allow_uids uid with the approval grant.
func TestApprovalSystemMode(t *testing.T) {
	b := newApprovalBed(t, mintRoot(t, "sys12345"))
	// Before anyone enrols, setup-system's file refuses every upload.
	if err := (store.ApprovalFile{Path: store.ApprovalPath(b.state)}).Save(&approval.Record{Policy: approval.Policy{Uploads: true}}); err != nil {
		t.Fatal(err)
	}
	b.start()
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized || e.Code != localapi.CodeApprovalRequired {
		t.Fatalf("upload before enrolment: %d %+v", status, e)
	}
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: "123456"}); status != http.StatusForbidden || e.Code != localapi.CodeApprovalRefused {
		t.Fatalf("upload with a code before enrolment: %d %+v", status, e)
	}
	// Who may enrol: not a stranger; not the daemon's own user into a
	// plain file (it could rewrite it).
	if status, _ := b.call(b.stranger, localapi.PathApprovalBegin, localapi.ApprovalBegin{}, nil); status != http.StatusForbidden {
		t.Errorf("a stranger began an enrolment: %d", status)
	}
	if status, e := b.call(b.owner, localapi.PathApprovalBegin, localapi.ApprovalBegin{}, nil); status != http.StatusConflict || !strings.Contains(e.Error, "--seal") {
		t.Errorf("the daemon's own user enrolled into a plain file: %d %+v", status, e)
	}
	secret := b.enrol(b.person, "", "")
	st := b.status()
	if st.Approval == nil || !st.Approval.Enrolled || !st.Approval.Uploads || st.Approval.UploadTTL != "2m0s" {
		t.Fatalf("status after enrolment: %+v", st.Approval)
	}
	// The code of setup's step is spent: the next step's.
	b.clock.add(30 * time.Second)

	// Reads need no code.
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: approvalServer + "+api"}); status != http.StatusOK {
		t.Fatalf("read: %d %+v", status, e)
	}
	// Uploads: none without a code, none with a wrong one.
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized || e.Code != localapi.CodeApprovalRequired {
		t.Fatalf("upload without a code: %d %+v", status, e)
	}
	right := approval.Code(secret, b.clock.Now())
	wrong := "000000"
	if wrong == right {
		wrong = "000001"
	}
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: wrong}); status != http.StatusForbidden || e.Code != localapi.CodeApprovalRefused {
		t.Fatalf("upload with a wrong code: %d %+v", status, e)
	}
	c, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: right, TTL: "10m"})
	if status != http.StatusOK {
		t.Fatalf("upload with the right code: %d %+v", status, e)
	}
	if max := b.clock.Now().Add(approval.DefaultUploadTTL).Unix(); c.Expires > max {
		t.Errorf("an approved token lives until %d, past %d", c.Expires, max)
	}
	if cv := caveatsOf(t, c); cv["allowed"] != "upload" {
		t.Errorf("approved upload token's caveats: %v", c.Caveats)
	}
	// The same code again: spent.
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: right}); status != http.StatusForbidden || !strings.Contains(e.Error, "used") {
		t.Fatalf("a spent code: %d %+v", status, e)
	}
	// Sessions: without a code, no permission to write.
	s, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: approvalServer, Session: true})
	if status != http.StatusOK {
		t.Fatalf("session: %d %+v", status, e)
	}
	if cv := caveatsOf(t, s); cv["allowed"] != "pkg_read,toxresult_upload" {
		t.Errorf("a session without a code can write: %v", s.Caveats)
	}
	b.clock.add(30 * time.Second)
	s, status, e = b.mint(b.owner, localapi.CredentialsRequest{URL: approvalServer, Session: true, Code: approval.Code(secret, b.clock.Now())})
	if status != http.StatusOK {
		t.Fatalf("session with a code: %d %+v", status, e)
	}
	if cv := caveatsOf(t, s); cv["allowed"] != "" || s.Expires > b.clock.Now().Add(approval.DefaultUploadTTL).Unix() {
		t.Errorf("an approved session: caveats %v, expires %d", s.Caveats, s.Expires)
	}
	// Every code checked has its line.
	// (before enrolment, setup, wrong, right, spent, session)
	if got := len(b.auditLines("approve")); got != 6 {
		t.Errorf("%d approve lines in the audit log, want 6", got)
	}

	// Enrolling again needs a current code.
	if status, e := b.call(b.person, localapi.PathApprovalBegin, localapi.ApprovalBegin{}, nil); status != http.StatusUnauthorized || e.Code != localapi.CodeApprovalRequired {
		t.Errorf("re-enrolment without a code: %d %+v", status, e)
	}
	// A restart keeps the policy: it is the daemon's file, not the config.
	b.start()
	if _, status, _ := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Errorf("upload without a code after a restart: %d", status)
	}
	// Off needs a code.
	if status, _ := b.call(b.person, localapi.PathApprovalOff, localapi.ApprovalOff{Code: wrong}, nil); status != http.StatusForbidden {
		t.Errorf("off with a wrong code: %d", status)
	}
	b.clock.add(30 * time.Second)
	if status, e := b.call(b.person, localapi.PathApprovalOff, localapi.ApprovalOff{Code: approval.Code(secret, b.clock.Now())}, nil); status != http.StatusOK {
		t.Fatalf("off: %d %+v", status, e)
	}
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusOK {
		t.Errorf("upload after approval off: %d %+v", status, e)
	}
}

// Five wrong codes: every code is refused for a minute, the right one
// too; lock and unlock do not clear it.
func TestApprovalBackoff(t *testing.T) {
	b := newApprovalBed(t, mintRoot(t, "back1234"))
	secret := b.enrol(b.person, "", "")
	b.clock.add(30 * time.Second)
	for i := range 5 {
		if _, status, _ := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: "99999" + itoa(i)}); status != http.StatusForbidden {
			t.Fatalf("wrong code %d: %d", i, status)
		}
	}
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	b.call(b.owner, localapi.PathUnlock, struct{}{}, nil)
	right := approval.Code(secret, b.clock.Now())
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: right}); status != http.StatusForbidden || !strings.Contains(e.Error, "until") {
		t.Fatalf("the right code during the backoff: %d %+v", status, e)
	}
	if st := b.status(); st.Approval.BlockedUntil == 0 || st.Approval.Failures < 5 {
		t.Errorf("status during the backoff: %+v", st.Approval)
	}
	b.clock.add(61 * time.Second)
	if _, status, e := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL, Code: approval.Code(secret, b.clock.Now())}); status != http.StatusOK {
		t.Fatalf("the right code after the backoff: %d %+v", status, e)
	}
}

// Personal mode: the token and the approval are in the sealed store; the
// daemon holds nothing until unlocked, and lock drops it again.
func TestApprovalSealed(t *testing.T) {
	b := newApprovalBed(t, nil) // no token file: the token is sealed
	root := mintRoot(t, "seal1234")
	pass := []byte("correct horse battery staple")
	sealed := store.Sealed{Path: store.SealedPath(b.state), WorkFactor: 10}
	if err := sealed.Seal(pass, &store.Vault{Tokens: map[string]string{"local": root.Reveal()}}); err != nil {
		t.Fatal(err)
	}
	b.start()
	st := b.status()
	if !st.Sealed || st.Opened {
		t.Fatalf("a new daemon on a sealed store: sealed %v opened %v", st.Sealed, st.Opened)
	}
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: approvalServer + "+api"}); status == http.StatusOK || !strings.Contains(e.Error, "unlock") {
		t.Fatalf("a read from a sealed daemon: %d %+v", status, e)
	}
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{}, nil); status != http.StatusBadRequest || e.Code != localapi.CodeSealed {
		t.Errorf("unlock without a passphrase: %d %+v", status, e)
	}
	if status, _ := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: "guess"}, nil); status != http.StatusForbidden {
		t.Errorf("unlock with a wrong passphrase: %d", status)
	}
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: string(pass)}, nil); status != http.StatusOK {
		t.Fatalf("unlock: %d %+v", status, e)
	}
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusOK {
		t.Fatalf("upload before approval is set up: %d %+v", status, e)
	}
	// Setup re-seals the store: the passphrase must open it as it is, so
	// no caller seals it under one of its own.
	var e localapi.ApprovalEnrollment
	if status, aerr := b.call(b.owner, localapi.PathApprovalBegin, localapi.ApprovalBegin{}, &e); status != http.StatusOK {
		t.Fatalf("begin: %d %+v", status, aerr)
	}
	secret, err := approval.ParseURI(e.URI)
	if err != nil {
		t.Fatal(err)
	}
	code := approval.Code(secret, b.clock.Now())
	if status, _ := b.call(b.owner, localapi.PathApprovalConfirm, localapi.ApprovalConfirm{ID: e.ID, Code: code, Passphrase: "the worm's own"}, nil); status != http.StatusForbidden {
		t.Fatalf("confirm with another passphrase: %d", status)
	}
	if _, err := sealed.Open([]byte("the worm's own")); err == nil {
		t.Fatal("the store was sealed under the caller's passphrase")
	}
	b.clock.add(30 * time.Second)
	code = approval.Code(secret, b.clock.Now())
	if status, aerr := b.call(b.owner, localapi.PathApprovalConfirm, localapi.ApprovalConfirm{ID: e.ID, Code: code, Passphrase: string(pass)}, nil); status != http.StatusOK {
		t.Fatalf("confirm: %d %+v", status, aerr)
	}
	v, err := sealed.Open(pass)
	if err != nil || !v.Approval.Enrolled() || !v.Approval.Policy.Uploads || v.Tokens["local"] == "" {
		t.Fatalf("the sealed store after setup: %v %+v", err, v)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Errorf("upload without a code: %d", status)
	}
	// Lock drops the store; a new daemon holds nothing until unlocked,
	// and then approval is on again, from the store.
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	if st := b.status(); st.Opened || st.Servers[0].Error == "" {
		t.Errorf("after lock: opened %v, server %+v", st.Opened, st.Servers[0])
	}
	b.start()
	if st := b.status(); !st.Sealed || st.Opened || st.Servers[0].TokenID != "" {
		t.Errorf("restarted: %+v", st)
	}
	if status, aerr := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: string(pass)}, nil); status != http.StatusOK {
		t.Fatalf("unlock: %d %+v", status, aerr)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Errorf("upload without a code after a restart: %d", status)
	}
	b.clock.add(30 * time.Second)
	if _, status, aerr := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: approval.Code(secret, b.clock.Now())}); status != http.StatusOK {
		t.Errorf("upload with a code after a restart: %d %+v", status, aerr)
	}
}

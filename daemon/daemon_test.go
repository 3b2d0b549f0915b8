package daemon

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

var testKey = []byte("daemon test root key")

// fixture is a daemon on a socket in a temp dir, with one server whose
// root token is a file.
type fixture struct {
	t         *testing.T
	dir       string
	config    string
	tokenFile string
	socket    string
	audit     string
	logs      *syncBuffer
	d         *Daemon
	client    *helper.Client
	cancel    context.CancelFunc
	done      chan error
	reload    chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mintRoot(t *testing.T, id string, rs ...token.Restriction) *token.Token {
	t.Helper()
	tok, err := token.New(testKey, "alice", id, rs...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeToken(t *testing.T, path string, tok *token.Token) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(tok.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func configText(serverURL, tokenFile, socket, audit, extra string) string {
	return fmt.Sprintf("socket = %q\naudit_log = %q\ndefault_ttl = \"2m\"\nmax_ttl = \"10m\"\n\n[servers.local]\nurl = %q\ntoken_file = %q\n%s",
		socket, audit, serverURL, tokenFile, extra)
}

func newFixture(t *testing.T, serverURL string, root *token.Token) *fixture {
	t.Helper()
	return newFixtureWith(t, serverURL, root, "", nil)
}

// newFixtureWith is newFixture with extra config text and a change to the
// daemon before it runs (tweak may be nil).
func newFixtureWith(t *testing.T, serverURL string, root *token.Token, extra string, tweak func(*Daemon)) *fixture {
	t.Helper()
	// Short paths: a Unix socket path has ~100 bytes at most.
	dir, err := os.MkdirTemp("", "credd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fixture{t: t, dir: dir, config: filepath.Join(dir, "conf", "config.toml"),
		tokenFile: filepath.Join(dir, "tokens", "local.token"), socket: filepath.Join(dir, "run", "s"),
		audit: filepath.Join(dir, "state", "audit.log"), logs: &syncBuffer{}, reload: make(chan struct{}, 1)}
	for _, d := range []string{"conf", "tokens"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(t, f.tokenFile, root)
	if err := os.WriteFile(f.config, []byte(configText(serverURL, f.tokenFile, f.socket, f.audit, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.d, err = New(Options{ConfigPath: f.config, Getenv: func(string) string { return "" },
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(f.d)
	}
	// Listening before Run: the socket takes connections once Listen
	// returns, so no polling for readiness.
	l, err := f.d.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.d.RunOn(ctx, l, f.reload) }()
	f.client = &helper.Client{Socket: f.socket}
	t.Cleanup(f.stop)
	// One request, waiting in the backlog until the daemon serves: it
	// serves only once its files are watched, so a test's first edit is
	// seen by the watcher, not only by the drift check.
	if _, err := f.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	if err := <-f.done; err != nil {
		f.t.Errorf("Run: %v", err)
	}
	_ = f.d.Close()
}

// restart runs another daemon on f's config, made with opts, on f's
// socket; it becomes f.d. stop (also run at cleanup) ends it.
func (f *fixture) restart(t *testing.T, opts Options) (d *Daemon, stop func()) {
	t.Helper()
	opts.ConfigPath = f.config
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunOn(ctx, l, nil) }()
	f.d = d
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		d.Close()
	}
	t.Cleanup(stop)
	return d, stop
}

func (f *fixture) get(url string) (*localapi.Credentials, error) {
	return f.client.Credentials(context.Background(), localapi.CredentialsRequest{URL: url})
}

// reloadWithin bounds how long a test waits for a reload. A reload takes a
// debounce (100 ms) when nothing is lost; a lost change notification would
// only be caught by the 30 s poll, so this still fails on a loss, while a
// busy machine never makes a pass fail.
const reloadWithin = 10 * time.Second

// waitFor polls cond until it holds or the deadline passes. Deadlines are
// generous: they bound a failure, they are not what a pass waits for.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMintUploadAndRefusals(t *testing.T) {
	root := mintRoot(t, "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	f := newFixture(t, "http://127.0.0.1:3141/", root)

	c, err := f.get("http://127.0.0.1:3141/alice/dev/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "alice" || c.Server != "local" || c.TokenID != "abcd2345" || !strings.HasPrefix(c.Password, "devpi-") {
		t.Errorf("credentials = %+v", c)
	}
	if d := time.Until(time.Unix(c.Expires, 0)); d > 2*time.Minute || d < time.Minute {
		t.Errorf("expires in %s, want the default ttl of 2m", d)
	}
	tok, err := token.Parse(c.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify(testKey, token.Request{Index: "alice/dev", Permission: "upload", User: "alice"}); err != nil {
		t.Errorf("minted token refused for its own upload: %v", err)
	}
	if err := tok.Verify(testKey, token.Request{Index: "alice/prod", Permission: "upload"}); err == nil {
		t.Error("minted token accepted for another index")
	}

	// ttl: clamped to max_ttl.
	c2, err := f.client.Credentials(context.Background(), localapi.CredentialsRequest{URL: "http://127.0.0.1:3141/alice/dev/", TTL: "10h"})
	if err != nil || time.Until(time.Unix(c2.Expires, 0)) > 10*time.Minute {
		t.Errorf("ttl 10h not clamped to 10m: %+v %v", c2, err)
	}

	for _, tt := range []struct {
		req  localapi.CredentialsRequest
		code string
		msg  string
	}{
		{localapi.CredentialsRequest{URL: "http://elsewhere/alice/dev/"}, localapi.CodeNotFound, "no configured server matches http://elsewhere/alice/dev/"},
		{localapi.CredentialsRequest{URL: "http://127.0.0.1:3141/alice/dev/", Username: "bob"}, localapi.CodeRefused, "Token doesn't match user name"},
		{localapi.CredentialsRequest{URL: "http://127.0.0.1:3141/", TTL: "soon"}, localapi.CodeBadRequest, "ttl"},
		{localapi.CredentialsRequest{URL: "ftp://x/"}, localapi.CodeBadRequest, "not an http(s) URL"},
		{localapi.CredentialsRequest{URL: "http://127.0.0.1:3141/alice/dev/", TTL: "500ms"}, localapi.CodeBadRequest, "at least 1s"},
		{localapi.CredentialsRequest{URL: "http://127.0.0.1:3141/alice/dev%2Cbob%2Fprod/"}, localapi.CodeBadRequest, "not a devpi USER/INDEX"},
	} {
		_, err := f.client.Credentials(context.Background(), tt.req)
		var ae *helper.APIError
		if !errors.As(err, &ae) || ae.Code != tt.code || !strings.Contains(ae.Msg, tt.msg) {
			t.Errorf("%+v: got %v, want %s %q", tt.req, err, tt.code, tt.msg)
		}
	}

	st, err := f.client.Status(context.Background())
	// A service no server matches (another host, not a URL at all) is not
	// ours: a miss, not a refusal.
	if err != nil || st.Minted != 2 || st.Refused != 4 || st.Missed != 2 || len(st.Servers) != 1 || st.Servers[0].TokenID != "abcd2345" {
		t.Errorf("status = %+v, %v", st, err)
	}

	// The audit log has a line per mint and refusal (none per miss), and
	// no secret.
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) != 6 {
		t.Fatalf("audit has %d lines, want 6:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var first auditEntry
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Event != "mint" || first.TokenID != "abcd2345" || first.Op != "upload" || first.Peer.UID != os.Getuid() ||
		first.Peer.PID <= 0 || first.Server != "local" || len(first.Caveats) != 3 {
		t.Errorf("audit line = %+v", first)
	}
	if runtime.GOOS == "linux" && (first.Peer.PPID <= 0 || first.Peer.ParentExe == "" || first.Peer.Exe == "") {
		t.Errorf("audit line lacks the caller's executable or parent: %+v", first.Peer)
	}
	noSecrets(t, strings.Join(lines, "\n")+f.logs.String(), root, tok)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// noSecrets fails when any token's text or signature shows in s.
func noSecrets(t *testing.T, s string, toks ...*token.Token) {
	t.Helper()
	for _, tok := range toks {
		body := strings.TrimPrefix(tok.Reveal(), token.Prefix)
		sig := tok.Signature()
		for _, needle := range []string{body[len(body)-24:], hex.EncodeToString(sig)[:16], base64.RawURLEncoding.EncodeToString(sig)[:16], base64.StdEncoding.EncodeToString(sig)[:16]} {
			if strings.Contains(s, needle) {
				t.Errorf("a secret of %v leaked: %q found", tok, needle)
			}
		}
	}
}

func TestReadTokenIncludesBases(t *testing.T) {
	var calls sync.Map
	devpiFake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Store(r.URL.Path, r.Header.Get("X-Devpi-Auth") != "")
		bases := map[string][]string{"/alice/dev": {"alice/base"}, "/alice/base": {"root/common"}, "/root/common": {}}[r.URL.Path]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "indexconfig", "result": map[string]any{"type": "stage", "bases": bases}})
	}))
	defer devpiFake.Close()
	root := mintRoot(t, "abcd2345")
	f := newFixture(t, devpiFake.URL+"/", root)
	c, err := f.get(devpiFake.URL + "/alice/dev/+simple/")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := token.Parse(c.Password)
	for _, ix := range []string{"alice/dev", "alice/base", "root/common"} {
		if err := tok.Verify(testKey, token.Request{Index: ix, Permission: "pkg_read"}); err != nil {
			t.Errorf("read token refused for %s: %v", ix, err)
		}
	}
	if err := tok.Verify(testKey, token.Request{Index: "alice/dev", Permission: "upload"}); err == nil {
		t.Error("read token may upload")
	}
	if err := tok.Verify(testKey, token.Request{Index: "bob/other", Permission: "pkg_read"}); err == nil {
		t.Error("read token reads an unrelated index")
	}
	if authed, _ := calls.Load("/alice/base"); authed != true {
		t.Error("the bases lookup did not authenticate")
	}
	// The lookup is cached: a second mint asks nothing.
	calls.Delete("/alice/dev")
	if _, err := f.get(devpiFake.URL + "/alice/dev/+simple/"); err != nil {
		t.Fatal(err)
	}
	if _, asked := calls.Load("/alice/dev"); asked {
		t.Error("bases were looked up again within a minute")
	}
}

func TestRotationPickedUp(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "firstAAA"))
	tokenID := func() string {
		st, err := f.client.Status(context.Background())
		if err != nil || len(st.Servers) == 0 {
			return ""
		}
		return st.Servers[0].TokenID
	}
	// Renamed over, as an atomic writer or 'token login' does.
	writeToken(t, f.tokenFile, mintRoot(t, "secondBB"))
	waitFor(t, reloadWithin, "rename over the token file", func() bool { return tokenID() == "secondBB" })
	c, err := f.get("http://h/")
	if err != nil || c.TokenID != "secondBB" {
		t.Errorf("mint after rotation: %+v %v", c, err)
	}

	// A Kubernetes-style symlink swap: token -> ..data/token, ..data -> a
	// timestamped directory, swapped by renaming a new ..data over.
	dir := filepath.Dir(f.tokenFile)
	mk := func(name, id string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "local.token"), []byte(mintRoot(t, id).Reveal()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("..v1", "thirdCCC")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "local.token"), f.tokenFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "token file replaced by a symlink", func() bool { return tokenID() == "thirdCCC" })
	mk("..v2", "fourthDD")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "symlink swap of ..data", func() bool { return tokenID() == "fourthDD" })
}

func TestBadConfigKeepsServing(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	good, _ := os.ReadFile(f.config)
	status := func() *localapi.Status {
		st, err := f.client.Status(context.Background())
		if err != nil {
			t.Fatalf("daemon stopped answering: %v", err)
		}
		return st
	}
	mintOK := func(what string) {
		t.Helper()
		if _, err := f.get("http://h/"); err != nil {
			t.Fatalf("%s: the old config no longer serves: %v", what, err)
		}
	}

	// A syntax error: logged, ignored, the old config serves.
	if err := os.WriteFile(f.config, []byte("[servers.local\nurl="), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "config error reported", func() bool { return status().ConfigError != "" })
	mintOK("after a syntax error")

	// A valid edit is picked up: a second server.
	edited := string(good) + "\n[servers.other]\nurl = \"http://other/\"\ntoken_file = " + fmt.Sprintf("%q", f.tokenFile) + "\n"
	if err := os.WriteFile(f.config, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "valid edit", func() bool { st := status(); return st.ConfigError == "" && len(st.Servers) == 2 })

	// Deleted, then recreated.
	if err := os.Remove(f.config); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "deleted config reported", func() bool { return status().ConfigError != "" })
	mintOK("with the config deleted")
	if err := os.WriteFile(f.config, good, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "recreated config", func() bool { st := status(); return st.ConfigError == "" && len(st.Servers) == 1 })

	// Truncate-then-write, as many editors save, slowly enough that the
	// daemon reloads in between: an empty file, a cut mid-line (a syntax
	// error) and a cut before the servers (valid TOML naming no server)
	// all leave the previous config serving.
	cut := strings.Index(string(good), "[servers.local]")
	for _, part := range [][]byte{nil, good[:cut+8], good[:cut]} {
		fh, err := os.OpenFile(f.config, os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fh.Write(part)
		fh.Sync()
		waitFor(t, reloadWithin, fmt.Sprintf("a config cut at %d bytes reported", len(part)), func() bool { return status().ConfigError != "" })
		mintOK(fmt.Sprintf("with the config cut at %d bytes", len(part)))
		if st := status(); len(st.Servers) != 1 {
			t.Fatalf("cut at %d bytes: servers %+v", len(part), st.Servers)
		}
		_, _ = fh.Seek(0, io.SeekStart)
		_, _ = fh.Write(good)
		fh.Close()
		waitFor(t, reloadWithin, "settled after truncate-then-write", func() bool { st := status(); return st.ConfigError == "" && len(st.Servers) == 1 })
	}

	// SIGHUP (the reload channel) reloads too.
	if err := os.WriteFile(f.config, []byte(strings.Replace(string(good), `default_ttl = "2m"`, `default_ttl = "3m"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.reload <- struct{}{}
	waitFor(t, reloadWithin, "reload on signal", func() bool { return status().DefaultTTL == "3m0s" })
	if !strings.Contains(f.logs.String(), "config not reloaded") {
		t.Error("a bad config was not logged")
	}
}

func TestOtherUIDRefused(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	h := f.d.Handler()
	for _, tt := range []struct {
		peer Peer
		want int
	}{
		{Peer{UID: os.Getuid() + 4242, PID: 1, Known: true}, http.StatusForbidden},
		{Peer{UID: os.Getuid(), PID: 1, Known: true}, http.StatusOK},
		// Where the kernel tells who calls, an unknown caller is refused.
		{Peer{UID: -1, PID: -1, Known: false}, map[bool]int{true: http.StatusForbidden, false: http.StatusOK}[peerCredentials]},
	} {
		req := httptest.NewRequest("POST", localapi.PathCredentials, strings.NewReader(`{"url":"http://h/"}`))
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, tt.peer))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("peer %+v: status %d, want %d: %s", tt.peer, rec.Code, tt.want, rec.Body)
		}
		if tt.want == http.StatusForbidden && strings.Contains(rec.Body.String(), "devpi-") {
			t.Error("a refused peer got a token")
		}
	}
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) == 0 || !strings.Contains(lines[0], `"event":"refuse"`) || !strings.Contains(lines[0], `may not use this daemon`) {
		t.Errorf("no refusal in the audit log: %q", lines)
	}
}

func TestHostileClients(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.socket)
	}}}
	for _, body := range []string{"", "{", "[]", strings.Repeat("x", 100<<10), `{"url": 7}`} {
		resp, err := hc.Post("http://d"+localapi.PathCredentials, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("body %.10q: %v", body, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %.10q: status %d, want 400", body, resp.StatusCode)
		}
	}
	// Garbage that is not HTTP, and a client that connects and says nothing.
	raw, err := net.Dial("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("\x00\x01garbage\r\n\r\n"))
	raw.Close()
	idle, err := net.Dial("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := f.get("http://h/"); err != nil {
		t.Errorf("the daemon stopped serving: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	// A second daemon on the same socket: refused, the first keeps it.
	d2, err := New(Options{ConfigPath: f.config, Getenv: func(string) string { return "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = d2.Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second daemon: %v", err)
	}
	d2.Close()
	if _, err := f.get("http://h/"); err != nil {
		t.Errorf("first daemon lost its socket: %v", err)
	}
	// After a clean stop the socket is gone.
	f.stop()
	if _, err := os.Lstat(f.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	// A stale socket (a crashed daemon's) is replaced.
	l, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(f.socket); err != nil {
		t.Fatalf("could not leave a stale socket: %v", err)
	}
	// restart waits until it answers on the stale socket's path.
	_, stop := f.restart(t, Options{})
	stop()
}

func TestNotRunningFailsFast(t *testing.T) {
	c := &helper.Client{Socket: filepath.Join(t.TempDir(), "nothing")}
	start := time.Now()
	_, err := c.Status(context.Background())
	if !errors.Is(err, helper.ErrNotRunning) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}

func TestBasesLookupFailures(t *testing.T) {
	var asked atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path == "/alice/missing" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message": "The stage alice/missing could not be found."}`)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer down.Close()
	f := newFixture(t, down.URL+"/", mintRoot(t, "abcd2345"))
	_, err := f.get(down.URL + "/alice/dev/+simple/")
	var ae *helper.APIError
	if !errors.As(err, &ae) || ae.Code != localapi.CodeUnavailable || !strings.Contains(ae.Msg, "cannot look up the bases of alice/dev") {
		t.Errorf("server error: %v", err)
	}
	// A failure is remembered briefly: the next mint does not wait again.
	n := asked.Load()
	if _, err := f.get(down.URL + "/alice/dev/+simple/"); err == nil || asked.Load() != n {
		t.Errorf("second mint asked the server again (%d -> %d) or succeeded: %v", n, asked.Load(), err)
	}
	_, err = f.get(down.URL + "/alice/missing/+simple/")
	if !errors.As(err, &ae) || !strings.Contains(ae.Msg, "index alice/missing does not exist") {
		t.Errorf("missing index: %v", err)
	}
	// Uploads need no lookup and still work.
	if _, err := f.get(down.URL + "/alice/dev/"); err != nil {
		t.Errorf("upload token: %v", err)
	}
}

// TestReloadWhileMinting: reloads (config swaps, audit log moves, token
// rotations) under a steady stream of mints lose no audit line and never
// pair a config with another's tokens.
func TestReloadWhileMinting(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	good, _ := os.ReadFile(f.config)
	var wg sync.WaitGroup
	var minted atomic.Int64
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.get("http://h/"); err != nil {
					t.Errorf("mint during reload: %v", err)
					return
				}
				minted.Add(1)
			}
		}()
	}
	audit2 := filepath.Join(f.dir, "state", "audit2.log")
	for i := 0; i < 20; i++ {
		text := string(good)
		if i%2 == 0 {
			text = strings.Replace(text, f.audit, audit2, 1)
		}
		if err := os.WriteFile(f.config+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.config+".tmp", f.config); err != nil {
			t.Fatal(err)
		}
		f.reload <- struct{}{}
		writeToken(t, f.tokenFile, mintRoot(t, "abcd2345"))
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	f.stop()
	lines := len(readLines(t, f.audit)) + len(readLines(t, audit2))
	if int64(lines) != minted.Load() {
		t.Errorf("%d mints, %d audit lines", minted.Load(), lines)
	}
	if strings.Contains(f.logs.String(), "audit log write failed") {
		t.Error("audit writes failed during reloads")
	}
}

// benchDaemon is a daemon, not serving, on a config with one server.
func benchDaemon(b *testing.B) *Daemon {
	b.Helper()
	dir := b.TempDir()
	tokenFile := filepath.Join(dir, "t")
	root, _ := token.New(testKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
	_ = os.WriteFile(tokenFile, []byte(root.Reveal()), 0o600)
	cfg := filepath.Join(dir, "c.toml")
	_ = os.WriteFile(cfg, []byte(configText("http://h/", tokenFile, filepath.Join(dir, "s"), filepath.Join(dir, "a.log"), "")), 0o600)
	d, err := New(Options{ConfigPath: cfg, Getenv: func(string) string { return "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// BenchmarkMint is the mint path without HTTP: scope, derive, serialize.
func BenchmarkMint(b *testing.B) {
	d := benchDaemon(b)
	req := localapi.CredentialsRequest{URL: "http://h/alice/dev/"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.mint(context.Background(), req, Peer{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMintHTTP adds the local API's HTTP handling and the audit line,
// in process.
func BenchmarkMintHTTP(b *testing.B) {
	h := benchDaemon(b).Handler()
	body := `{"url":"http://h/alice/dev/"}`
	// As a connection on the socket would carry it: the caller is us.
	ctx := context.WithValue(context.Background(), peerKey{}, Peer{UID: os.Getuid(), PID: os.Getpid(), Known: true})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(ctx, "POST", localapi.PathCredentials, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

// TestDevpiClientRefresh: with devpi_client = true, the daemon renews the
// session token in devpi-client's auth.json once it has less than a third
// of max_session_ttl left, and leaves a password login alone.
func TestDevpiClientRefresh(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	f.stop()
	text, _ := os.ReadFile(f.config)
	cfg := strings.Replace(string(text), `max_ttl = "10m"`, "max_ttl = \"10m\"\nmax_session_ttl = \"30s\"", 1) + "devpi_client = true\n"
	_ = os.WriteFile(f.config, []byte(cfg), 0o600)
	clientDir := filepath.Join(f.dir, "devpi-client")
	env := map[string]string{"DEVPI_CLIENTDIR": clientDir}
	cd := devpi.StateDir{Dir: clientDir}
	// A session token with 5 s left: less than a third of 30 s.
	old, _ := mintRoot(t, "abcd2345").Derive(token.Expires(time.Now().Add(5 * time.Second)))
	if err := cd.SetAuth("http://h/", devpi.Auth{User: "alice", Secret: old.Reveal()}); err != nil {
		t.Fatal(err)
	}
	// bob logged in later with a password on the same server: devpi-client
	// uses bob now, and a refresh must not change that.
	if err := cd.SetAuth("http://h/", devpi.Auth{User: "bob", Secret: "bob's password session"}); err != nil {
		t.Fatal(err)
	}
	// A token from another root token is not ours to renew.
	foreign, _ := mintRoot(t, "zzzz2345").Derive(token.Expires(time.Now().Add(time.Second)))
	if err := cd.SetAuth("http://other/", devpi.Auth{User: "alice", Secret: foreign.Reveal()}); err != nil {
		t.Fatal(err)
	}
	_ = cd.SetRoot("http://h/")
	_ = cd.SetAuth("http://h/", devpi.Auth{User: "bob", Secret: "bob's password session"})
	currentBefore, _ := os.ReadFile(filepath.Join(clientDir, "current.json"))
	_, stop := f.restart(t, Options{Getenv: func(k string) string { return env[k] }, RefreshEvery: 20 * time.Millisecond})
	var fresh *token.Token
	waitFor(t, 5*time.Second, "devpi-client login renewed", func() bool {
		a, ok, _ := cd.Auth("http://h/", "alice")
		if !ok {
			return false
		}
		tok, err := token.Parse(a.Secret)
		if err != nil || tok.Equal(old) {
			return false
		}
		fresh = tok
		return true
	})
	if exp := fresh.Scope().Expires; exp == nil || time.Until(*exp) < 20*time.Second {
		t.Errorf("renewed token expires %v, want about 30 s from now", exp)
	}
	if err := fresh.Verify(testKey, token.Request{Index: "alice/dev", Permission: "upload"}); err != nil {
		t.Errorf("session token refused for an upload: %v", err)
	}
	if a, _, _ := cd.Auth("http://h/", "bob"); a.Secret != "bob's password session" {
		t.Error("bob's password login was touched")
	}
	if a, _, _ := cd.Auth("http://other/", "alice"); a.Secret != foreign.Reveal() {
		t.Error("a token of another root token was renewed")
	}
	if a, _, _ := cd.Auth("http://h/", ""); a.User != "bob" {
		t.Errorf("the most recent login moved to %s", a.User)
	}
	if after, _ := os.ReadFile(filepath.Join(clientDir, "current.json")); string(after) != string(currentBefore) {
		t.Errorf("current.json changed: %s -> %s", currentBefore, after)
	}
	stop()
	lines := readLines(t, f.audit)
	if last := lines[len(lines)-1]; !strings.Contains(last, `"op":"session"`) || !strings.Contains(last, "devpi-client login refreshed") {
		t.Errorf("no refresh in the audit log: %s", last)
	}
}

func TestReadScopeServer(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	text, _ := os.ReadFile(f.config)
	_ = os.WriteFile(f.config, append(text, []byte("read_scope = \"server\"\n")...), 0o600)
	f.reload <- struct{}{}
	waitFor(t, reloadWithin, "read_scope reloaded", func() bool { return f.d.Config().Servers[0].ReadScope == "server" })
	c, err := f.get("http://h/alice/dev/+simple/foo/")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Caveats, " "); strings.Contains(got, "indexes=") || strings.Contains(got, "projects=") || !strings.Contains(got, "allowed=pkg_read") {
		t.Errorf("read_scope server: caveats %s", got)
	}
	// Uploads stay scoped to their index.
	c, _ = f.get("http://h/alice/dev/")
	if got := strings.Join(c.Caveats, " "); !strings.Contains(got, "indexes=alice/dev") {
		t.Errorf("upload under read_scope server: %s", got)
	}
}

func TestLockUnlock(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	st, err := f.client.Lock(context.Background())
	if err != nil || !st.Locked {
		t.Fatalf("Lock = %+v, %v", st, err)
	}
	_, err = f.get("http://h/alice/dev/")
	var ae *helper.APIError
	if !errors.As(err, &ae) || ae.Code != localapi.CodeLocked || ae.Status != http.StatusLocked {
		t.Errorf("mint while locked: %v", err)
	}
	if st, _ := f.client.Status(context.Background()); !st.Locked {
		t.Error("status does not say locked")
	}
	if st, err := f.client.Unlock(context.Background(), ""); err != nil || st.Locked {
		t.Fatalf("Unlock = %+v, %v", st, err)
	}
	if _, err := f.get("http://h/alice/dev/"); err != nil {
		t.Errorf("mint after unlock: %v", err)
	}
	f.stop()
	audit := strings.Join(readLines(t, f.audit), "\n")
	for _, want := range []string{`"event":"lock"`, `"reason":"the daemon is locked`, `"event":"unlock"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s:\n%s", want, audit)
		}
	}
}

// TestLockSurvivesRestart: with a lock file, a restarted daemon is still
// locked.
func TestLockSurvivesRestart(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	f.stop()
	lockFile := filepath.Join(f.dir, "state", "locked")
	_, stop := f.restart(t, Options{LockFile: lockFile})
	if _, err := f.client.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()
	f.restart(t, Options{LockFile: lockFile})
	if st, _ := f.client.Status(context.Background()); !st.Locked {
		t.Error("a restart unlocked the daemon")
	}
	if _, err := f.client.Unlock(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lockFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unlock left the lock file: %v", err)
	}
}

func TestMintBudget(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	text, _ := os.ReadFile(f.config)
	_ = os.WriteFile(f.config, append([]byte("mint_budget = 3\n"), text...), 0o600)
	f.reload <- struct{}{}
	waitFor(t, reloadWithin, "budget reloaded", func() bool { return f.d.Config().MintBudget == 3 })
	for i := 0; i < 3; i++ {
		if _, err := f.get("http://h/"); err != nil {
			t.Fatalf("mint %d within the budget: %v", i+1, err)
		}
	}
	_, err := f.get("http://h/")
	var ae *helper.APIError
	if !errors.As(err, &ae) || ae.Code != localapi.CodeBudget || ae.Status != http.StatusTooManyRequests {
		t.Fatalf("4th mint: %v", err)
	}
	// Another program has a budget of its own.
	other := Peer{UID: os.Getuid(), PID: 1, Exe: "/usr/bin/other", Known: true}
	if _, err := f.d.MintFor(context.Background(), localapi.CredentialsRequest{URL: "http://h/"}, other, ""); err != nil {
		t.Errorf("another program: %v", err)
	}
	f.stop()
	if audit := strings.Join(readLines(t, f.audit), "\n"); !strings.Contains(audit, "over the mint budget") {
		t.Error("the refusal is not audited")
	}
}

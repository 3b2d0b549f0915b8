package daemon

// Regression tests for the attack review (issue 8): each reproduces an
// attack or fault and failed before its fix.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// asPeer runs h with the request coming from p.
func asPeer(h http.Handler, p Peer, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req = req.WithContext(context.WithValue(req.Context(), peerKey{}, p))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// Item 2: an allowed uid gets scoped tokens only; sessions, lock and
// unlock stay the owner's unless allow_uids_grant says otherwise.
func TestAllowedUIDsGetScopedTokensOnly(t *testing.T) {
	const other = 4242
	for _, tt := range []struct {
		grant string
		want  int
	}{
		{"", http.StatusForbidden},
		{`allow_uids_grant = ["session", "lock"]` + "\n", http.StatusOK},
	} {
		f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", nil)
		f.stop()
		text, _ := os.ReadFile(f.config)
		if err := os.WriteFile(f.config, []byte(fmt.Sprintf("allow_uids = [%d]\nshared_socket = %q\n%s%s", other, filepath.Join(f.dir, "shared", "s"), tt.grant, text)), 0o600); err != nil {
			t.Fatal(err)
		}
		d, _ := f.restart(t, Options{LockFile: filepath.Join(f.dir, "locked")})
		h := d.Handler()
		peer := Peer{UID: other, PID: 1, Known: true}
		if rec := asPeer(h, peer, "POST", localapi.PathCredentials, `{"url":"http://h/alice/dev/"}`); rec.Code != http.StatusOK {
			t.Errorf("grant %q: a scoped token for an allowed uid: %d %s", tt.grant, rec.Code, rec.Body)
		}
		rec := asPeer(h, peer, "POST", localapi.PathCredentials, `{"url":"http://h/","session":true}`)
		if rec.Code != tt.want || (tt.want != http.StatusOK && strings.Contains(rec.Body.String(), "devpi-")) {
			t.Errorf("grant %q: a session token for an allowed uid: %d %s", tt.grant, rec.Code, rec.Body)
		}
		if tt.want == http.StatusForbidden && !strings.Contains(rec.Body.String(), "scoped tokens only") {
			t.Errorf("the refusal does not say why: %s", rec.Body)
		}
		// The owner locks; the allowed uid cannot unlock (nor lock).
		if rec := asPeer(h, Peer{UID: os.Getuid(), PID: 1, Known: true}, "POST", localapi.PathLock, "{}"); rec.Code != http.StatusOK {
			t.Fatalf("owner lock: %d %s", rec.Code, rec.Body)
		}
		if rec := asPeer(h, peer, "POST", localapi.PathUnlock, "{}"); rec.Code != tt.want {
			t.Errorf("grant %q: unlock by an allowed uid: %d %s", tt.grant, rec.Code, rec.Body)
		}
		if locked := d.Status().Locked; locked != (tt.want != http.StatusOK) {
			t.Errorf("grant %q: locked = %v after the allowed uid's unlock", tt.grant, locked)
		}
	}
}

// strangers makes the connections accepted n-th (from 1) for each n in
// which come from uid 4242, a uid the daemon does not serve, and the
// others from whoever really calls: connections are accepted in the order
// they were made.
func strangers(which func(n int64) bool) func(*Daemon) {
	return func(d *Daemon) {
		var seen atomic.Int64
		d.peerOf = func(c net.Conn) Peer {
			if which(seen.Add(1)) {
				return Peer{UID: 4242, PID: 7, Known: true}
			}
			return peerOf(c)
		}
	}
}

// readsEOF reports whether the daemon closes c within d.
func readsEOF(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // io.Copy turns EOF into nil; a timeout is an error
}

// Item 3: another uid holding connections open cannot exhaust the daemon:
// over its cap they are closed at once, those within it live strangerLife
// at most, and the owner is served throughout.
func TestStrangersCannotHoldConnections(t *testing.T) {
	const held, flood = maxUIDConns, 20
	// Connection 1: the fixture's first status call; 2 to flood+1: silent
	// strangers; flood+2: the owner's; flood+3: a stranger with a request,
	// once the held ones are gone.
	f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", strangers(func(n int64) bool { return n >= 2 && n <= flood+1 || n == flood+3 }))
	var conns []net.Conn
	for range flood {
		c, err := net.Dial("unix", f.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The owner is served while the strangers hold their connections.
	if _, err := f.get("http://h/"); err != nil {
		t.Fatalf("the owner was not served during the flood: %v", err)
	}
	// The owner's request was accepted after all of them (in order), so
	// those over the cap are closed by now: well within strangerLife.
	for i, c := range conns[held:] {
		if !readsEOF(c, strangerLife/2) {
			t.Errorf("connection %d over the cap was not closed at once", held+i)
		}
	}
	// Those within the cap: by strangerLife, well before the server's own
	// ReadHeaderTimeout (5 s) would close them.
	start := time.Now()
	for i, c := range conns[:held] {
		if !readsEOF(c, strangerLife+10*time.Second) {
			t.Errorf("held connection %d was not closed", i)
		}
	}
	if d := time.Since(start); d > strangerLife+2*time.Second {
		t.Errorf("held connections lived %s, want at most about %s", d, strangerLife)
	}
	// The cap is free again. A stranger with a request is refused, and its
	// connection closed after the answer, not kept alive.
	waitFor(t, reloadWithin, "the held connections released", func() bool {
		return f.d.conns.others.open() == 0
	})
	c, err := net.Dial("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"url\":\"http://h/\"}", localapi.PathCredentials)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !resp.Close || strings.Contains(string(body), "devpi-") {
		t.Errorf("stranger's request: %d close=%v %s", resp.StatusCode, resp.Close, body)
	}
	if !readsEOF(c, 5*time.Second) {
		t.Error("a refused connection was kept open")
	}
	if st := f.d.Status(); st.Dropped != flood-held {
		t.Errorf("dropped = %d, want %d", st.Dropped, flood-held)
	}
}

// Item 3: refusals from one uid cannot flood the owner's audit log: a
// burst of lines, then one summary line with the count.
func TestRefusalLinesAreRateLimited(t *testing.T) {
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", func(d *Daemon) {
		d.opts.Now = func() time.Time { return clock }
	})
	h := f.d.Handler()
	const n = 3000
	for range n {
		if rec := asPeer(h, Peer{UID: 4242, PID: 9, Known: true}, "POST", localapi.PathCredentials, `{"url":"http://h/"}`); rec.Code != http.StatusForbidden {
			t.Fatalf("stranger: %d", rec.Code)
		}
	}
	if st := f.d.Status(); st.Refused != n {
		t.Errorf("refused = %d, want %d: every refusal is counted", st.Refused, n)
	}
	f.stop() // flushes the summary
	lines := readLines(t, f.audit)
	refusals, summed := 0, 0
	for _, l := range lines {
		var e auditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		switch e.Event {
		case "refuse":
			refusals++
		case "refuse_summary":
			summed += e.Count
			if e.Peer.UID != 4242 || e.Since == nil || !strings.Contains(e.Reason, "may not use this daemon") {
				t.Errorf("summary line: %s", l)
			}
		}
	}
	if refusals != refusalBurst || refusals+summed != n {
		t.Errorf("%d refusal lines and %d summed up, want %d and %d", refusals, summed, refusalBurst, n-refusalBurst)
	}
}

// Item 6: a change made after the config was loaded but before the
// daemon serves is not lost.
func TestChangeBeforeServingIsNotLost(t *testing.T) {
	f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", func(d *Daemon) {
		// Between New and the watches being armed.
		text, _ := os.ReadFile(d.opts.ConfigPath)
		if err := os.WriteFile(d.opts.ConfigPath, []byte(strings.Replace(string(text), `default_ttl = "2m"`, `default_ttl = "4m"`, 1)), 0o600); err != nil {
			panic(err)
		}
	})
	waitFor(t, reloadWithin, "the change made before serving", func() bool { return f.d.Config().DefaultTTL == 4*time.Minute })
}

// Item 6: edits that follow each reload at once, the pattern that lost
// events while the watches were removed and added again, are all seen.
func TestEditsRightAfterReloadAreNotLost(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	good, _ := os.ReadFile(f.config)
	for i := range 30 {
		ttl := fmt.Sprintf("%dm", 2+i%2)
		if i%3 == 0 {
			// A config that fails: reported, and the next edit still seen.
			if err := os.WriteFile(f.config, []byte("[servers.local\nurl="), 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, reloadWithin, fmt.Sprintf("edit %d: error reported", i), func() bool { return f.d.Status().ConfigError != "" })
		}
		text := strings.Replace(string(good), `default_ttl = "2m"`, fmt.Sprintf("default_ttl = %q", ttl), 1)
		if err := os.WriteFile(f.config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		want, _ := time.ParseDuration(ttl)
		waitFor(t, reloadWithin, fmt.Sprintf("edit %d", i), func() bool {
			return f.d.Status().ConfigError == "" && f.d.Config().DefaultTTL == want
		})
	}
}

// Item 7: servers are matched on the decoded, cleaned path, the form the
// token is scoped by: "%64evpi" is "devpi" to both.
func TestPercentEncodingPicksOneServer(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	text, _ := os.ReadFile(f.config)
	pref := fmt.Sprintf("\n[servers.pref]\nurl = \"http://h/devpi/\"\ntoken_file = %q\n", f.tokenFile)
	if err := os.WriteFile(f.config, append(text, pref...), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reloadWithin, "second server", func() bool { return len(f.d.Config().Servers) == 2 })
	for _, url := range []string{"http://h/devpi/alice/dev/", "http://h/%64evpi/alice/dev/", "http://h//devpi/alice/dev/", "http://h/devpi%2Falice/dev/"} {
		c, err := f.get(url)
		if err != nil {
			t.Errorf("%s: %v", url, err)
			continue
		}
		if c.Server != "pref" || !strings.Contains(strings.Join(c.Caveats, " "), "indexes=alice/dev") {
			t.Errorf("%s: server %s, caveats %v; want pref and alice/dev", url, c.Server, c.Caveats)
		}
	}
	if _, err := f.get("http://h/devpi/../alice/dev/"); err == nil {
		t.Error("a dot segment was resolved instead of refused")
	}
}

// Item 8: a password in a URL never reaches the audit log, the daemon's
// log or an error, whatever it holds.
func TestPasswordsInURLsAreNeverLogged(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	secrets := map[string][]string{
		"http://alice:Zq9#S3cret@h/alice/dev/":    {"Zq9", "S3cret"},
		"http://alice:31337#Zq8@h/":               {"31337#", "alice:31337", "Zq8"},
		"http://alice:Pw?Qx7@h/alice/dev/":        {"Pw?", "Qx7"},
		"http://alice:Pw@Qx6@h/alice/dev/":        {"Pw@", "Qx6"},
		"http://alice:Pw/Qx5@h/alice/dev/":        {"Pw/", "Qx5"},
		"alice:Pw#Qx4@h":                          {"Pw#", "Qx4"},
		"http://alice:Pw#Qx3@elsewhere/":          {"Pw#", "Qx3"},
		"ftp://alice:Pw#Qx2@h/":                   {"Pw#", "Qx2"},
		"http://alice:Pw#Qx1@h/alice/dev/?a#b@c=": {"Pw#", "Qx1"},
	}
	var errs []string
	for url := range secrets {
		if _, err := f.get(url); err != nil {
			errs = append(errs, err.Error())
		}
	}
	f.stop()
	all := strings.Join(readLines(t, f.audit), "\n") + f.logs.String() + strings.Join(errs, "\n")
	for url, words := range secrets {
		for _, w := range words {
			if strings.Contains(all, w) {
				t.Errorf("%s: %q leaked", url, w)
			}
		}
	}
}

// An '@' after the host is refused: a client would connect to the host
// before it, and a token scoped for the one after it must never go there.
func TestAtAfterHostGetsNoToken(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	for _, url := range []string{"http://evil.example/x@h/alice/dev/", "http://files.evil.example/p.tar.gz?sig=a@h",
		"http://evil.example/#@h/alice/dev/", "evil.example/@h", "http://evil.example\\@h/alice/dev/"} {
		if c, err := f.get(url); err == nil || c != nil {
			t.Errorf("%s: a token for %s", url, c.Server)
		}
	}
}

// Names longer than any real one are refused: they would make every
// caveat and audit line (and bases cache entry) as long.
func TestLongNamesAreRefused(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	for _, url := range []string{"http://h/u/" + strings.Repeat("i", 200) + "/", "http://h/" + strings.Repeat("u", 200) + "/dev/+simple/",
		"http://h/u/dev/+simple/" + strings.Repeat("p", 200) + "/"} {
		if _, err := f.get(url); err == nil || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%.40s...: %v", url, err)
		}
	}
	if _, err := f.get("http://h/u/" + strings.Repeat("i", maxName) + "/"); err != nil {
		t.Errorf("a name of %d characters: %v", maxName, err)
	}
}

// Item 11: the bases cache is bounded, however many indexes are named.
func TestBasesCacheIsBounded(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"indexconfig","result":{"type":"stage","bases":[]}}`)
	}))
	defer fake.Close()
	f := newFixture(t, fake.URL+"/", mintRoot(t, "abcd2345"))
	for i := range basesEntries + 500 {
		if _, err := f.get(fmt.Sprintf("%s/alice/ix%d/+simple/", fake.URL, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.d.bases.lru.Len(); n > basesEntries {
		t.Errorf("%d cached indexes, want at most %d", n, basesEntries)
	}
}

// Item 13: poetry's and pdm's repository-name lookups are not ours: not
// refusals, and no audit lines.
func TestLookupsNotOursAreNotRefusals(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	for _, service := range []string{"python-poetry-check", "poetry-repository-devpi", "pdm-repository-devpi", "https://pypi.org/simple/"} {
		if _, err := f.get(service); !helper.IsNotFound(err) {
			t.Errorf("%s: %v, want not found", service, err)
		}
	}
	st := f.d.Status()
	if st.Refused != 0 || st.Missed != 4 {
		t.Errorf("refused %d, missed %d; want 0 and 4", st.Refused, st.Missed)
	}
	f.stop()
	if lines := readLines(t, f.audit); len(lines) != 0 {
		t.Errorf("audit lines for lookups that are not ours: %q", lines)
	}
}

// The local API decodes strictly: a key that differs only in case, a key
// given twice, an unknown key or trailing data is refused, never guessed.
func TestStrictRequestDecoding(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	h := f.d.Handler()
	me := Peer{UID: os.Getuid(), PID: 1, Known: true}
	for body, want := range map[string]int{
		`{"url":"http://elsewhere/","URL":"http://h/"}`: http.StatusBadRequest,
		`{"URL":"http://h/"}`:                           http.StatusBadRequest,
		`{"url":"http://h/x/","url":"http://h/"}`:       http.StatusBadRequest,
		`{"url":"http://h/","extra":1}`:                 http.StatusBadRequest,
		`{"url":"http://h/"} {}`:                        http.StatusBadRequest,
		`{"url":"http://h/"}`:                           http.StatusOK,
	} {
		rec := asPeer(h, me, "POST", localapi.PathCredentials, body)
		if rec.Code != want || (want != http.StatusOK && strings.Contains(rec.Body.String(), "devpi-")) {
			t.Errorf("%s: %d %s, want %d", body, rec.Code, rec.Body, want)
		}
	}
}

// A huge URL is logged capped, once.
func TestLongURLIsCapped(t *testing.T) {
	f := newFixture(t, "http://h/", mintRoot(t, "abcd2345"))
	// Under the 64 KiB body limit, so that it reaches the mint.
	long := "http://h/alice/dev/+simple/" + strings.Repeat("x", 60<<10) + "/"
	if _, err := f.get(long); err == nil {
		t.Error("a 60 KiB project name was accepted")
	}
	f.stop()
	lines := readLines(t, f.audit)
	if len(lines) != 1 {
		t.Fatalf("want one refusal line, got %d", len(lines))
	}
	for _, l := range lines {
		if len(l) > 2048 {
			t.Errorf("an audit line of %d bytes", len(l))
		}
	}
	for _, l := range strings.Split(f.logs.String(), "\n") {
		if len(l) > 4096 {
			t.Errorf("a log line of %d bytes", len(l))
		}
	}
}

// The refusal-line table starting afresh (too many callers) writes what
// it held back first: a flood is not forgotten by adding callers.
func TestRefusalTableOverflowKeepsCounts(t *testing.T) {
	var r refusalLines
	now := time.Now()
	flooder := caller{uid: 4242}
	for range refusalBurst + 5 {
		r.allow(flooder, "flood", now)
	}
	var summaries []auditEntry
	for i := range maxCallers {
		s, ok := r.allow(caller{uid: 10000 + i}, "other", now)
		if !ok {
			t.Fatalf("caller %d's first refusal held back", i)
		}
		summaries = append(summaries, s...)
	}
	if len(summaries) != 1 || summaries[0].Count != 5 || summaries[0].Peer.UID != 4242 {
		t.Errorf("summaries on overflow: %+v, want the flooder's 5", summaries)
	}
}

// Remote callers' lines are counted per IPv6 /64: one host has a whole
// /64 of addresses to rotate through.
func TestCallerOfIPv6Prefix(t *testing.T) {
	a := callerOf(auditEntry{Remote: "2001:db8:1:2::5"})
	b := callerOf(auditEntry{Remote: "2001:db8:1:2:ffff::9"})
	c := callerOf(auditEntry{Remote: "2001:db8:1:3::5"})
	v4 := callerOf(auditEntry{Remote: "198.51.100.3"})
	if a != b || a == c || a.remote != "2001:db8:1:2::/64" || v4.remote != "198.51.100.3" {
		t.Errorf("callers: %+v %+v %+v %+v", a, b, c, v4)
	}
}

// Addresses that each hold back one refusal (21 from each: 20 lines'
// worth of their own budget, the shared one long spent) do not each get a
// summary line: past the shared budget their counts join "*".
func TestRefusalSummariesShareTheRemoteBudget(t *testing.T) {
	var r refusalLines
	now := time.Now()
	const addrs, each = 300, refusalBurst + 1
	lines, counted := 0, 0
	for i := range addrs {
		c := caller{uid: -1, remote: fmt.Sprintf("198.51.%d.%d", i/250, i%250)}
		for range each {
			summaries, ok := r.allow(c, "garbage", now)
			for _, s := range summaries {
				lines++
				counted += s.Count
			}
			if ok {
				lines++
				counted++
			}
		}
	}
	for _, s := range r.flush(now) {
		lines++
		counted += s.Count
	}
	if counted != addrs*each || lines > refusalRemoteBurst+1 {
		t.Errorf("%d refusals counted in %d lines, want %d in at most %d", counted, lines, addrs*each, refusalRemoteBurst+1)
	}
}

// Issue 15, hole 7: refusals from more remote addresses than the table
// holds do not give a local uid a fresh burst of lines, nor more local
// uids a remote address.
func TestRefusalBudgetsLocalAndRemoteApart(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	// Exhausted: every allow of c from now on is held back.
	exhaust := func(r *refusalLines, c caller) {
		for range refusalBurst {
			r.allow(c, "flood", now)
		}
		if _, ok := r.allow(c, "flood", now); ok {
			t.Fatalf("%+v: a line past its burst", c)
		}
	}
	local, remote := caller{uid: 4242}, caller{uid: -1, remote: "198.51.100.7"}
	var r refusalLines
	exhaust(&r, local)
	for i := range maxCallers + 1 {
		r.allow(caller{uid: -1, remote: fmt.Sprintf("127.%d.%d.%d", i>>16&255, i>>8&255, i&255)}, "garbage", now)
	}
	if _, ok := r.allow(local, "flood", now); ok {
		t.Error("remote addresses refilled a local uid's burst")
	}
	var s refusalLines
	exhaust(&s, remote)
	for i := range maxCallers + 1 {
		s.allow(caller{uid: 10000 + i}, "stranger", now)
	}
	if _, ok := s.allow(remote, "garbage", now); ok {
		t.Error("local uids refilled a remote address's burst")
	}
}

// The same through the daemon: a uid's refusals get a burst of lines,
// however many exchange refusals from rotating addresses come between.
func TestExchangeRefusalsDoNotRefillLocalBursts(t *testing.T) {
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f := newFixtureWith(t, "http://h/", mintRoot(t, "abcd2345"), "", func(d *Daemon) {
		d.opts.Now = func() time.Time { return clock }
	})
	h := f.d.Handler()
	const rounds, each = 3, refusalBurst
	for round := range rounds {
		for range each {
			if rec := asPeer(h, Peer{UID: 4242, PID: 9, Known: true}, "POST", localapi.PathCredentials, `{"url":"http://h/"}`); rec.Code != http.StatusForbidden {
				t.Fatalf("stranger: %d", rec.Code)
			}
		}
		for i := range maxCallers + 1 {
			remote := fmt.Sprintf("127.%d.%d.%d", round, i>>8&255, i&255)
			f.d.refuse(auditEntry{Time: clock, Event: "exchange", Remote: remote}, "exchange: invalid token")
		}
	}
	f.stop()
	lines := 0
	for _, l := range readLines(t, f.audit) {
		var e auditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if e.Event == "refuse" && e.Remote == "" && e.Peer.UID == 4242 {
			lines++
		}
	}
	if lines != refusalBurst {
		t.Errorf("%d refusal lines for uid 4242 in %d refusals, want its burst, %d", lines, rounds*each, refusalBurst)
	}
}

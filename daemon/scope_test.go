package daemon

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/token"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestClassify(t *testing.T) {
	root := mustURL(t, "http://h:3141/")
	sub := mustURL(t, "https://h/devpi/")
	tests := []struct {
		root *url.URL
		in   string
		want Target
	}{
		{root, "http://h:3141", Target{Op: OpRead}},
		{root, "http://h:3141/", Target{Op: OpRead}},
		{root, "http://h:3141/+api", Target{Op: OpRead}},
		{root, "http://h:3141/alice/", Target{Op: OpRead}},
		{root, "http://h:3141/alice/dev/", Target{Op: OpUpload, Index: "alice/dev"}},
		{root, "http://h:3141/alice/dev", Target{Op: OpUpload, Index: "alice/dev"}},
		{root, "http://h:3141/alice/dev/+simple/", Target{Op: OpRead, Index: "alice/dev"}},
		{root, "http://h:3141/alice/dev/+simple/Foo.Bar/", Target{Op: OpRead, Index: "alice/dev", Project: "Foo.Bar"}},
		{root, "http://h:3141/alice/dev/+f/abc/def/x.whl", Target{Op: OpRead, Index: "alice/dev"}},
		{root, "http://h:3141/alice/dev/foo/1.0", Target{Op: OpRead, Index: "alice/dev", Project: "foo"}},
		{root, "http://h:3141/alice/+simple/", Target{Op: OpRead}},
		{sub, "https://h/devpi/alice/dev/", Target{Op: OpUpload, Index: "alice/dev"}},
		{sub, "https://h/devpi/alice/dev/+simple/x/", Target{Op: OpRead, Index: "alice/dev", Project: "x"}},
		{sub, "https://h/devpi", Target{Op: OpRead}},
	}
	for _, tt := range tests {
		if got, err := Classify(tt.root, mustURL(t, tt.in)); err != nil || got != tt.want {
			t.Errorf("Classify(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	// Names that could not become a caveat are refused, never dropped.
	for _, bad := range []string{
		"http://h:3141/alice/dev,x/",
		"http://h:3141/alice/dev%2Cbob%2Fprod/",
		"http://h:3141/alice/dev=x/",
		"http://h:3141/al%20ice/dev/",
		"http://h:3141/alice/dev/+simple/a,b/",
		"http://h:3141/alice/dev/+simple/foo%20bar/",
		"http://h:3141/alice/dev/-foo/",
		"http://h:3141/+x/../../other/",
		"http://h:3141/alice/./dev/",
	} {
		if got, err := Classify(root, mustURL(t, bad)); err == nil {
			t.Errorf("Classify(%s) = %+v, want an error", bad, got)
		}
	}
}

func TestParseService(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:3141":           "//127.0.0.1:3141",
		"devpi.example":            "//devpi.example",
		"http://h:1/a/b/":          "http://h:1/a/b/",
		" https://h/ ":             "https://h/",
		"https://h/x/+simple/?q=1": "https://h/x/+simple/",
		// User info goes before anything else looks at the text, as HTTP
		// clients read it: the host follows the authority's last '@'.
		"u:secret@h":             "//h",
		"http://alice:p@ss@h/a/": "http://h/a/",
		// One form for matching and scoping: decoded, no empty segments.
		"http://h/%64evpi//alice/": "http://h/devpi/alice/",
	} {
		u, err := safeurl.ParseService(in)
		if err != nil || u.String() != want {
			t.Errorf("safeurl.ParseService(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h/", "http://", "u:secret@", "h/path", "ftp://u:secret@h/",
		// An '@' after the host: a password with a '/', '?' or '#' that
		// was not encoded, or a hostile host's path: refused, never read
		// as another host.
		"http://alice:secret#x@h/a/", "http://evil.example/x@h:3141/alice/dev/", "http://evil.example:3141/?q=@h:3141/",
		"http://evil.example/#@h:3141/", "evil.example/@h:3141", "alice:secret://x@127.0.0.1:3141", "http://evil.example\\@h:3141/", "http://evil.example\t@h:3141/",
		"http://h/a/b/+simple/%zz?token=secret", "ftp://h/?token=secret", "http://h/%zz#secret"} {
		_, err := safeurl.ParseService(bad)
		if err == nil {
			t.Errorf("safeurl.ParseService(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func planFixture(t *testing.T, rootCaveats ...token.Restriction) (*token.Token, *config.Server) {
	t.Helper()
	root, err := token.New([]byte("k"), "alice", "abcd2345", rootCaveats...)
	if err != nil {
		t.Fatal(err)
	}
	return root, &config.Server{Name: "local", URL: mustURL(t, "http://h/")}
}

func caveats(p *Plan) []string {
	var out []string
	for _, c := range p.Caveats {
		out = append(out, c.Caveat())
	}
	return out
}

func TestPlan(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	root, srv := planFixture(t, token.Expires(now.Add(24*time.Hour)))

	p, err := plan(root, srv, Target{Op: OpUpload, Index: "alice/dev"}, nil, "", now, 5*time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"expires=1000300", "allowed=upload", "indexes=alice/dev"}; !slices.Equal(caveats(p), want) {
		t.Errorf("upload caveats %q, want %q", caveats(p), want)
	}
	p, err = plan(root, srv, Target{Op: OpRead, Index: "alice/dev", Project: "Foo_Bar"}, []string{"root/base", "alice/base"}, "alice", now, time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"expires=1000060", "allowed=pkg_read", "indexes=alice/base,alice/dev,root/base", "projects=Foo_Bar"}; !slices.Equal(caveats(p), want) {
		t.Errorf("read caveats %q, want %q", caveats(p), want)
	}
	// The derived token verifies for what it is for and nothing else.
	d, _ := root.Derive(p.Caveats...)
	ok := token.Request{Now: now, Index: "root/base", Permission: "pkg_read", User: "alice"}
	if err := d.Verify([]byte("k"), ok); err != nil {
		t.Errorf("read token refused for its base index: %v", err)
	}
	if err := d.Verify([]byte("k"), token.Request{Now: now, Index: "alice/dev", Permission: "upload"}); err == nil {
		t.Error("a read token may upload")
	}
	if err := d.Verify([]byte("k"), token.Request{Now: now.Add(time.Minute), Permission: "pkg_read"}); err == nil {
		t.Error("the token outlives its ttl")
	}

	// Never past the root token's expiry.
	short, _ := planFixture(t, token.Expires(now.Add(time.Minute)))
	p, _ = plan(short, srv, Target{Op: OpRead}, nil, "", now, time.Hour, time.Time{})
	if !p.Expires.Equal(now.Add(time.Minute)) {
		t.Errorf("expires %v past the root's", p.Expires)
	}
}

func TestPlanRefuses(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ix, _ := token.Indexes("alice/dev")
	ro, _ := token.Allowed("pkg_read")
	pr, _ := token.Projects("foo")
	tests := []struct {
		name   string
		root   []token.Restriction
		srv    func(*config.Server)
		target Target
		user   string
		want   string
	}{
		{"expired", []token.Restriction{token.Expires(now)}, nil, Target{Op: OpRead}, "", "expired"},
		{"not yet", []token.Restriction{token.NotBefore(now.Add(time.Hour))}, nil, Target{Op: OpRead}, "", "not valid before"},
		{"other index", []token.Restriction{ix}, nil, Target{Op: OpUpload, Index: "alice/prod"}, "", "index alice/prod is outside"},
		{"read-only root", []token.Restriction{ro}, nil, Target{Op: OpUpload, Index: "alice/dev"}, "", `needs permission "upload"`},
		{"other project", []token.Restriction{pr}, nil, Target{Op: OpRead, Index: "alice/dev", Project: "bar"}, "", "project bar is outside"},
		{"other user", nil, nil, Target{Op: OpRead}, "bob", "Token doesn't match user name"},
		{"config index", nil, func(s *config.Server) { s.Limits.Indexes = []string{"alice/dev"} }, Target{Op: OpUpload, Index: "alice/x"}, "", "outside"},
		{"config allowed", nil, func(s *config.Server) { s.Limits.Allowed = []string{"pkg_read"} }, Target{Op: OpUpload, Index: "alice/x"}, "", "needs permission"},
		{"config project", nil, func(s *config.Server) { s.Limits.Projects = []string{"Foo.Bar"} }, Target{Op: OpRead, Index: "a/b", Project: "baz"}, "", "project baz"},
	}
	for _, tt := range tests {
		root, srv := planFixture(t, tt.root...)
		if tt.srv != nil {
			tt.srv(srv)
		}
		_, err := plan(root, srv, tt.target, nil, tt.user, now, time.Minute, time.Time{})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
	// Configured limits become caveats of their own, reads included.
	root, srv := planFixture(t)
	srv.Limits.Indexes, srv.Limits.Allowed = []string{"alice/dev"}, []string{"pkg_read", "upload"}
	p, err := plan(root, srv, Target{Op: OpRead}, nil, "", now, time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(caveats(p), " "); !strings.Contains(got, "indexes=alice/dev") || !strings.Contains(got, "allowed=pkg_read,upload") {
		t.Errorf("whole-server read under configured limits: %s", got)
	}
	// The config's own project list accepts its normalised spelling.
	root, srv = planFixture(t)
	srv.Limits.Projects = []string{"Foo.Bar"}
	if _, err := plan(root, srv, Target{Op: OpRead, Index: "a/b", Project: "foo-bar"}, nil, "", now, time.Minute, time.Time{}); err != nil {
		t.Errorf("normalised project refused: %v", err)
	}
}

func TestBareHostMatchesOnlyHTTP(t *testing.T) {
	c := &config.Config{Servers: []config.Server{
		{Name: "secure", URL: mustURL(t, "https://devpi.example/")},
		{Name: "plain", URL: mustURL(t, "http://127.0.0.1:3141/")},
	}}
	for svc, want := range map[string]string{
		"devpi.example":                       "",
		"http://devpi.example/alice/dev/":     "",
		"https://devpi.example/alice/dev/":    "secure",
		"127.0.0.1:3141":                      "plain",
		"http://127.0.0.1:3141/x/y/+simple/":  "plain",
		"https://127.0.0.1:3141/x/y/+simple/": "",
	} {
		u, err := safeurl.ParseService(svc)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := c.Match(u)
		got := ""
		if ok {
			got = s.Name
		}
		if got != want {
			t.Errorf("ServerFor(%q) = %q, want %q", svc, got, want)
		}
	}
}

func TestPlanDeadline(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	root, srv := planFixture(t)
	p, err := plan(root, srv, Target{Op: OpRead}, nil, "", now, time.Hour, now.Add(time.Minute))
	if err != nil || !p.Expires.Equal(now.Add(time.Minute)) {
		t.Errorf("deadline not applied: %v %v", p, err)
	}
	if _, err := plan(root, srv, Target{Op: OpRead}, nil, "", now, time.Hour, now); !errors.Is(err, ErrRefused) {
		t.Errorf("after the deadline: %v", err)
	}
}

// FuzzServiceURL: whatever a caller sends, parsing and scoping never
// panic, and a target's names are valid caveat material.
func FuzzServiceURL(f *testing.F) {
	for _, s := range []string{"http://h/alice/dev/", "h:3141", "https://u:p@h/a/b/+simple/c/?q", "http://h/a/b,c/", "http://h/%2e%2e/x/"} {
		f.Add(s)
	}
	root := &url.URL{Scheme: "http", Host: "h", Path: "/"}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := safeurl.ParseService(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if u.User != nil {
			t.Fatal("user info kept")
		}
		tg, err := Classify(root, u)
		if err != nil {
			return
		}
		if tg.Index != "" {
			if _, err := token.Indexes(tg.Index); err != nil {
				t.Fatalf("index %q cannot be a caveat: %v", tg.Index, err)
			}
		}
		if tg.Project != "" {
			if _, err := token.Projects(tg.Project); err != nil {
				t.Fatalf("project %q cannot be a caveat: %v", tg.Project, err)
			}
		}
	})
}

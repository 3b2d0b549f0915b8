package token

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in    string
		want  time.Time
		never bool
	}{
		{"never", time.Time{}, true},
		{"1700000000", time.Unix(1700000000, 0), false},
		{"1 year", now.AddDate(1, 0, 0), false},
		{"3 years", now.AddDate(3, 0, 0), false},
		{"1y", now.AddDate(1, 0, 0), false},
		{"2 months", now.AddDate(0, 2, 0), false},
		{"2M", now.AddDate(0, 2, 0), false},
		{"2 weeks", now.Add(14 * 24 * time.Hour), false},
		{"1 day", now.Add(24 * time.Hour), false},
		{"10h", now.Add(10 * time.Hour), false},
		{"30min", now.Add(30 * time.Minute), false},
		{"10 min", now.Add(10 * time.Minute), false},
		{"5m", now.Add(5 * time.Minute), false},
		{"90s", now.Add(90 * time.Second), false},
		{"2 seconds", now.Add(2 * time.Second), false},
		{"1.5h", now.Add(90 * time.Minute), false},
		{"1 day and 12 hours", now.Add(36 * time.Hour), false},
		{"1 week, 2 days", now.Add(9 * 24 * time.Hour), false},
		{"1h30min", now.Add(90 * time.Minute), false},
		{"-1 day", now.Add(-24 * time.Hour), false},
		{"- 10s", now.Add(-10 * time.Second), false},
		{"  2 hours ", now.Add(2 * time.Hour), false},
	}
	for _, tt := range tests {
		at, never, err := ParseExpiry(tt.in, now)
		if err != nil {
			t.Errorf("ParseExpiry(%q): %v", tt.in, err)
			continue
		}
		if never != tt.never || !at.Equal(tt.want) {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %v, %v", tt.in, at, never, tt.want, tt.never)
		}
	}
	for _, bad := range []string{"", "soon", "1 fortnight", "h", "1 hourx", "10 ms", "1 day 2", "-", "1e9 years", "Never",
		"400000 days", "999999 weeks", "-999999 weeks", "1001 years", "12013 months", "900 years 900 years"} {
		if at, _, err := ParseExpiry(bad, now); err == nil {
			t.Errorf("ParseExpiry(%q) accepted: %v", bad, at)
		}
	}
	// Long but sane deltas land where the calendar says.
	if at, _, err := ParseExpiry("100 years", now); err != nil || at.Year() != 2126 {
		t.Errorf("100 years = %v, %v", at, err)
	}
	if at, _, err := ParseExpiry("36500 days", now); err != nil || at.Year() != 2126 {
		t.Errorf("36500 days = %v, %v", at, err)
	}
	// Past time.Duration's 292 years, without wrapping around.
	if at, _, err := ParseExpiry("200000 days", now); err != nil || at.Year() != 2574 {
		t.Errorf("200000 days = %v, %v", at, err)
	}
}

func TestNormalizeList(t *testing.T) {
	got, err := NormalizeList([]string{"pkg_read", "toxresult_upload , pypi_submit", "pkg_read"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pkg_read", "pypi_submit", "toxresult_upload"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range [][]string{{"a,,b"}, {""}, {"a,"}, {" "}, {"a b"}, {"x=y"}} {
		if _, err := NormalizeList(bad); err == nil {
			t.Errorf("NormalizeList(%q) accepted", bad)
		}
	}
}

func TestRestrictionConstructors(t *testing.T) {
	ix, err := Indexes("bar/dev , foo/prod", "bar/dev")
	if err != nil || ix.Caveat() != "indexes=bar/dev,foo/prod" {
		t.Errorf("Indexes = %q, %v", ix.Caveat(), err)
	}
	for _, bad := range []string{"foo", "/foo", "foo/", "a/b/c"} {
		if _, err := Indexes(bad); err == nil {
			t.Errorf("Indexes(%q) accepted", bad)
		}
	}
	if _, err := Projects(); err == nil {
		t.Error("Projects() accepted an empty list")
	}
	p, _ := Projects("Foo.Bar", "baz")
	a, _ := Allowed("upload", "pkg_read")
	for r, want := range map[Restriction]string{
		p:                                   "projects=Foo.Bar,baz",
		a:                                   "allowed=pkg_read,upload",
		NeverExpires():                      "expires=never",
		Expires(time.Unix(1700000000, 999)): "expires=1700000000",
		NotBefore(time.Unix(1600000000, 0)): "not_before=1600000000",
	} {
		if r.Caveat() != want {
			t.Errorf("caveat %q, want %q", r.Caveat(), want)
		}
	}
	if !KnownPermission("upload") || !KnownPermission("user_modify") || KnownPermission("pypi_submit") {
		t.Error("KnownPermission is wrong")
	}
}

func TestParseCaveat(t *testing.T) {
	tests := []struct {
		raw     string
		kind    CaveatKind
		list    []string
		problem bool
	}{
		{"expires=1700000000", KindDevpi, nil, false},
		{"expires=never", KindDevpi, nil, false},
		{"expires=soon", KindDevpi, nil, true},
		{"indexes=a/b,c/d", KindDevpi, []string{"a/b", "c/d"}, false},
		{"colour=blue", KindUnknown, nil, true},
		{"just text", KindUnknown, nil, true},
		{`{"version": 1, "permissions": {"projects": ["Foo"]}}`, KindPyPIPerms, []string{"Foo"}, false},
		{`{"version": 1, "permissions": "user"}`, KindPyPIPerms, nil, false},
		{`{"version": 2, "permissions": "user"}`, KindPyPIPerms, nil, true},
		{`{"version": 1, "permissions": {"projects": "Foo"}}`, KindPyPIPerms, nil, true},
		{`{"nbf": 1, "exp": 2}`, KindPyPIExpiry, nil, false},
		{`{"nbf": "1", "exp": 2.5}`, KindPyPIExpiry, nil, false},
		{"allowed=upload, pkg_read", KindDevpi, []string{"upload", " pkg_read"}, false},
		{`[0, 2, 1]`, KindPyPILegacyExp, nil, false},
		{`[1, ["a", "b"]]`, KindPyPIProjects, []string{"a", "b"}, false},
		{`[1, "a"]`, KindPyPIProjects, nil, true},
		{`[7]`, KindUnknown, nil, true},
	}
	for _, tt := range tests {
		c := ParseCaveat(tt.raw)
		if c.Kind != tt.kind || !slices.Equal(c.List, tt.list) || (c.Problem != "") != tt.problem {
			t.Errorf("ParseCaveat(%q) = %+v", tt.raw, c)
		}
	}
}

func TestScope(t *testing.T) {
	root := testToken(t, Expires(time.Unix(2000, 0)))
	a1, _ := Allowed("upload", "pkg_read")
	a2, _ := Allowed("pkg_read", "del_entry")
	ix, _ := Indexes("u/a", "u/b")
	tok, _ := root.Derive(Expires(time.Unix(1500, 0)), Expires(time.Unix(1800, 0)), a1, a2, ix, NotBefore(time.Unix(10, 0)))
	tok = deriveRaw(t, tok, []string{`[1, ["Foo_Bar", "baz"]]`, "projects=foo-bar,other"})
	s := tok.Scope()
	if s.Expires == nil || s.Expires.Unix() != 1500 || s.Never {
		t.Errorf("expires = %v", s.Expires)
	}
	if s.NotBefore == nil || s.NotBefore.Unix() != 10 {
		t.Errorf("not_before = %v", s.NotBefore)
	}
	if !slices.Equal(s.Allowed, []string{"pkg_read"}) || !slices.Equal(s.Indexes, []string{"u/a", "u/b"}) ||
		!slices.Equal(s.Projects, []string{"foo-bar"}) {
		t.Errorf("scope = %+v", s)
	}
	never := testToken(t, NeverExpires()).Scope()
	if !never.Never || never.Allowed != nil {
		t.Errorf("never scope = %+v", never)
	}
	if s := deriveRaw(t, root, []string{"bogus=1"}).Scope(); len(s.Problems) != 1 {
		t.Errorf("problems = %q", s.Problems)
	}
}

func TestVerify(t *testing.T) {
	key := []byte("test root key")
	now := time.Unix(1_000_000, 0)
	up, _ := Allowed("upload", "pkg_read")
	read, _ := Allowed("pkg_read")
	ix, _ := Indexes("ci-bot/dev")
	pr, _ := Projects("Foo.Bar")
	root := testToken(t, Expires(now.Add(time.Hour)))
	derive := func(rs ...Restriction) *Token {
		d, err := root.Derive(rs...)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name string
		tok  *Token
		req  Request
		want string // "" = accepted
	}{
		{"root, no context", root, Request{}, ""},
		{"own user name", root, Request{User: "ci-bot"}, ""},
		{"other user name", root, Request{User: "mallory"}, "doesn't match user name"},
		{"expired", derive(Expires(now)), Request{}, "Token expired at 1000000"},
		{"not yet", derive(NotBefore(now.Add(time.Second))), Request{}, "not valid before"},
		{"index ok", derive(ix), Request{Index: "ci-bot/dev"}, ""},
		{"index other", derive(ix), Request{Index: "ci-bot/prod"}, "denied access to index 'ci-bot/prod'"},
		{"index irrelevant", derive(ix), Request{}, ""},
		{"project normalised", derive(pr), Request{Index: "ci-bot/dev", Project: "foo_bar"}, ""},
		{"project other", derive(pr), Request{Index: "ci-bot/dev", Project: "Baz"}, "denied access to project 'baz'"},
		{"allowed", derive(up), Request{Permission: "upload"}, ""},
		{"allowed intersect", derive(up, read), Request{Permission: "upload"}, "not allowed"},
		{"allowed untrimmed", deriveRaw(t, root, []string{"allowed=upload, pkg_read"}), Request{Permission: "pkg_read"}, "not allowed"},
		{"user perms never", root, Request{Permission: "user_modify"}, "never has permission"},
		{"unknown caveat", deriveRaw(t, root, []string{"colour=blue"}), Request{}, "not a caveat"},
		{"pypi expiry", deriveRaw(t, root, []string{`{"nbf": 0, "exp": 999999}`}), Request{}, "expired"},
		{"pypi projects", deriveRaw(t, root, []string{`{"version": 1, "permissions": {"projects": ["x"]}}`}),
			Request{Index: "ci-bot/dev", Project: "y"}, "project 'y'"},
		{"pypi user scope", deriveRaw(t, root, []string{`{"version": 1, "permissions": "user"}`}),
			Request{Index: "ci-bot/dev", Project: "y"}, ""},
	}
	for _, tt := range tests {
		tt.req.Now = now
		err := tt.tok.Verify(key, tt.req)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (!errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
	// A forged token with a caveat that would fail: the signature is
	// checked first, so the refusal names the signature, not the caveat.
	forged := deriveRaw(t, root, []string{"colour=blue"})
	if err := forged.Verify([]byte("another key"), Request{Now: now}); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged: %v", err)
	}
}

func TestNormalizeProject(t *testing.T) {
	for in, want := range map[string]string{
		"Foo.Bar": "foo-bar", "foo__bar": "foo-bar", "A-_.B": "a-b", "x.": "x-", "-x": "-x",
		"simple": "simple", "Zope.Interface": "zope-interface", "ÄB_c": "äb-c",
	} {
		if got := NormalizeProject(in); got != want {
			t.Errorf("NormalizeProject(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"1 year", "never", "-1 day", "1700000000", "1h30min", "1.5 M", "999999 weeks", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		at, never, err := ParseExpiry(s, now)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if !never && at.IsZero() {
			t.Fatalf("%q: no time and not never", s)
		}
	})
}

func FuzzParseCaveat(f *testing.F) {
	for _, s := range []string{"expires=1", "allowed=a,b", `{"version": 1, "permissions": {"projects": ["x"]}}`, `[0, 1, 2]`, `[1, ["a"]]`, `{"nbf": "1", "exp": 2.5}`, "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCaveat(s)
		if c.Raw != s {
			t.Fatal("Raw changed")
		}
		_ = ScopeOf([]Caveat{c, c})
	})
}

package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeTokenService is GitHub Actions' token service: it counts what it is
// asked, and for which audiences.
type fakeTokenService struct {
	*httptest.Server
	calls     atomic.Int64
	audiences chan string
}

func newFakeTokenService(t *testing.T) *fakeTokenService {
	ts := &fakeTokenService{audiences: make(chan string, 16)}
	ts.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.calls.Add(1)
		ts.audiences <- r.URL.Query().Get("audience")
		_, _ = w.Write([]byte(`{"value":"A.JWT.VALUE"}`))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *fakeTokenService) env() map[string]string {
	return map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": ts.URL + "/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token"}
}

// fakeExchange names audience and counts the identity tokens posted to it.
func fakeExchange(t *testing.T, audience string, posted *atomic.Int64) *url.URL {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathAudience {
			_ = json.NewEncoder(w).Encode(map[string]string{"audience": audience})
			return
		}
		posted.Add(1)
		_, _ = w.Write([]byte(`{"success":true,"token":"devpi-x","username":"u","expires":1}`))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// Hole 2: an exchange that names another audience (AWS's) gets nothing,
// and the job's token service is never asked: the client decides the
// audience, not the server.
func TestClientRefusesTheAudienceAnExchangeNames(t *testing.T) {
	ts := newFakeTokenService(t)
	var posted atomic.Int64
	base := fakeExchange(t, "sts.amazonaws.com", &posted)
	env := ts.env()
	c := &Client{Base: base, HTTP: ts.Client(), Getenv: func(k string) string { return env[k] }}
	ctx := context.Background()
	if _, _, err := c.IDToken(ctx, IDTokenRequest{}); !errors.Is(err, ErrAudience) || !strings.Contains(err.Error(), `names the audience "sts.amazonaws.com", this job asks for "127.0.0.1"`) {
		t.Errorf("an exchange naming another audience: %v", err)
	}
	// A token in hand is not sent either: Exchange is never reached.
	env[IDTokenEnv] = "A.JWT.INHAND"
	if _, _, err := c.IDToken(ctx, IDTokenRequest{}); !errors.Is(err, ErrAudience) {
		t.Errorf("with a token in hand: %v", err)
	}
	delete(env, IDTokenEnv)
	if n := ts.calls.Load(); n != 0 {
		t.Errorf("the token service was asked %d times", n)
	}
	if n := posted.Load(); n != 0 {
		t.Errorf("the exchange got %d identity tokens", n)
	}
	// The job that means that audience says so, and gets its token.
	jwt, source, err := c.IDToken(ctx, IDTokenRequest{Audience: "sts.amazonaws.com"})
	if err != nil || jwt != "A.JWT.VALUE" || source != "GitHub Actions" {
		t.Fatalf("with --audience: %q %q %v", jwt, source, err)
	}
	if aud := <-ts.audiences; aud != "sts.amazonaws.com" {
		t.Errorf("asked for audience %q", aud)
	}
}

// The default audience is the exchange's host name; PyPI's are refused
// whoever names them, before anything is asked.
func TestResolveAudience(t *testing.T) {
	for _, tt := range []struct{ base, given, want string }{
		{"https://Devpi.Example.COM:8443", "", "devpi.example.com"},
		{"https://devpi.example.com./", "", "devpi.example.com"},
		{"http://[::1]:8181", "", "::1"},
		{"https://devpi.example.com", "devpi-prod", "devpi-prod"},
	} {
		u, _ := url.Parse(tt.base)
		if got, err := ResolveAudience(u, tt.given); err != nil || got != tt.want {
			t.Errorf("%s %q: %q %v, want %q", tt.base, tt.given, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ base, given string }{
		{"https://pypi", ""},
		{"https://devpi.example.com", "PyPI"},
		{"https://devpi.example.com", "testpypi"},
		{"https://devpi.example.com", " devpi"},
		{"https://devpi.example.com", "devpi\n"},
	} {
		u, _ := url.Parse(tt.base)
		if got, err := ResolveAudience(u, tt.given); !errors.Is(err, ErrAudience) {
			t.Errorf("%s %q: %q %v, want refused", tt.base, tt.given, got, err)
		}
	}
	ts := newFakeTokenService(t)
	var posted atomic.Int64
	env := ts.env()
	c := &Client{Base: fakeExchange(t, "pypi", &posted), HTTP: ts.Client(), Getenv: func(k string) string { return env[k] }}
	if _, _, err := c.IDToken(context.Background(), IDTokenRequest{Audience: "pypi"}); !errors.Is(err, ErrAudience) {
		t.Errorf("--audience pypi: %v", err)
	}
	if n := ts.calls.Load() + posted.Load(); n != 0 {
		t.Errorf("%d requests for PyPI's audience", n)
	}
}

// GitLab's convention: an id_tokens: entry named after the audience
// (upper-cased, all but A-Z and 0-9 made _) is read, after
// $DEVPI_CREDD_ID_TOKEN and before GitHub Actions' token service.
func TestIDTokenFromTheAudienceVariable(t *testing.T) {
	ts := newFakeTokenService(t)
	var posted atomic.Int64
	env := ts.env()
	glAud := unsignedJWT(map[string]any{"aud": "devpi.example.com", "jti": "aud"})
	glOurs := unsignedJWT(map[string]any{"aud": "devpi.example.com", "jti": "ours"})
	env["DEVPI_EXAMPLE_COM_ID_TOKEN"] = glAud
	env["OTHER_EXAMPLE_COM_ID_TOKEN"] = unsignedJWT(map[string]any{"aud": "other.example.com"})
	c := &Client{Base: fakeExchange(t, "devpi.example.com", &posted), HTTP: ts.Client(), Getenv: func(k string) string { return env[k] }}
	ctx := context.Background()
	req := IDTokenRequest{Audience: "devpi.example.com"}
	if jwt, source, err := c.IDToken(ctx, req); err != nil || jwt != glAud || source != "$DEVPI_EXAMPLE_COM_ID_TOKEN" {
		t.Errorf("the audience's variable: %q %q %v", jwt, source, err)
	}
	env[IDTokenEnv] = glOurs
	if jwt, source, err := c.IDToken(ctx, req); err != nil || jwt != glOurs || source != "$"+IDTokenEnv {
		t.Errorf("$%s first: %q %q %v", IDTokenEnv, jwt, source, err)
	}
	if n := ts.calls.Load(); n != 0 {
		t.Errorf("the token service was asked %d times with a token in hand", n)
	}
}

func TestAudienceEnv(t *testing.T) {
	for aud, want := range map[string]string{
		"devpi.example.com":     "DEVPI_EXAMPLE_COM_ID_TOKEN",
		"pypi":                  "PYPI_ID_TOKEN",
		"https://x.example/a-b": "HTTPS___X_EXAMPLE_A_B_ID_TOKEN",
		"Dev9":                  "DEV9_ID_TOKEN",
		"ünı":                   "_N__ID_TOKEN", // no Unicode case mapping: ı is not I
		"::1":                   "__1_ID_TOKEN",
	} {
		if got := AudienceEnv(aud); got != want {
			t.Errorf("%q: %s, want %s", aud, got, want)
		}
	}
	if got := IDTokenVars("devpi-credd"); len(got) != 1 || got[0] != IDTokenEnv {
		t.Errorf("IDTokenVars(devpi-credd) = %v", got)
	}
	if got := IDTokenVars("devpi.example.com"); len(got) != 2 || got[1] != "DEVPI_EXAMPLE_COM_ID_TOKEN" {
		t.Errorf("IDTokenVars = %v", got)
	}
}

package devpi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/token"
)

// fakeServer answers like devpi-server for the few calls under test.
func fakeServer(t *testing.T, rootKey []byte) (*httptest.Server, *[]*http.Request, *[]string) {
	t.Helper()
	var reqs []*http.Request
	var bodies []string
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /+api", func(w http.ResponseWriter, r *http.Request) {
		status := []any{"noauth", "", []any{}}
		if h := r.Header.Get("X-Devpi-Auth"); h != "" {
			b, _ := base64.StdEncoding.DecodeString(h)
			user, _, _ := strings.Cut(string(b), ":")
			status = []any{"ok", user, []any{}}
		}
		reply(w, 200, map[string]any{"type": "apiconfig", "result": map[string]any{"login": "http://" + r.Host + "/+login", "authstatus": status}})
	})
	mux.HandleFunc("POST /+login", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in["password"] != "pw" {
			reply(w, 401, map[string]any{"message": "user '" + in["user"] + "' could not be authenticated"})
			return
		}
		reply(w, 200, map[string]any{"type": "proxyauth", "result": map[string]any{"password": "session-secret", "expiration": 36000}})
	})
	mux.HandleFunc("POST /{user}/+token-create", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("user") != "alice" {
			reply(w, 403, map[string]any{"message": "Access was denied to this resource.\n\n\nUnauthorized: user_token_create failed permission check\n\n"})
			return
		}
		tok, _ := token.New(rootKey, "alice", "abcd2345", token.Expires(time.Now().Add(time.Hour)))
		reply(w, 200, map[string]any{"type": "token-info", "result": map[string]any{"token": tok.Reveal()}})
	})
	mux.HandleFunc("GET /{user}/+tokens", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"type": "tokens-info", "result": map[string]any{"tokens": map[string]any{
			"zzzz2345": map[string]any{"restrictions": []string{"expires=1"}},
			"aaaa2345": map[string]any{},
		}}})
	})
	mux.HandleFunc("DELETE /{user}/+tokens/gxne2345", func(w http.ResponseWriter, r *http.Request) {
		// devpi-web renders errors as HTML, whatever the Accept header.
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `<html><body><div class="header"><p>search help</p></div>
<div id="content">
  <h1>Not Found</h1>
  <p>The following resource could not be found:</p>
  <p>No token with id gxne2345 &amp; that&#x27;s that</p>
</div><footer>devpi-web</footer></body></html>`)
	})
	mux.HandleFunc("DELETE /{user}/+tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"message": "token " + r.PathValue("id") + " deleted"})
	})
	mux.HandleFunc("GET /redirect/+api", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/+api", http.StatusFound)
	})
	mux.HandleFunc("GET /html/+api", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html>not devpi</html>")
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		reqs = append(reqs, r)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs, &bodies
}

func client(t *testing.T, raw string, auth *Auth) *Client {
	t.Helper()
	root, err := ParseRoot(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{Root: root, Auth: auth}
}

func TestClientCalls(t *testing.T) {
	ctx := context.Background()
	key := []byte("fake server key")
	srv, reqs, bodies := fakeServer(t, key)
	c := client(t, srv.URL, nil)

	info, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.AuthOK(); ok || info.AuthState() != "noauth" {
		t.Errorf("authstatus = %v", info.AuthStatus)
	}
	if _, err := c.Login(ctx, "alice", "wrong"); !IsStatus(err, 401) || !strings.Contains(err.Error(), "could not be authenticated") {
		t.Errorf("Login(wrong) = %v", err)
	}
	s, err := c.Login(ctx, "alice", "pw")
	if err != nil || s.Password != "session-secret" || s.Expiration != 36000 {
		t.Fatalf("Login = %+v, %v", s, err)
	}
	if got := (*bodies)[len(*bodies)-1]; got != `{"password":"pw","user":"alice"}` {
		t.Errorf("login body = %s", got)
	}

	c.Auth = &Auth{User: "alice", Secret: s.Password}
	if user, ok := mustAPI(t, c).AuthOK(); !ok || user != "alice" {
		t.Errorf("authstatus as alice = %q %v", user, ok)
	}
	last := (*reqs)[len(*reqs)-1]
	if got := last.Header.Get("X-Devpi-Auth"); got != base64.StdEncoding.EncodeToString([]byte("alice:session-secret")) {
		t.Errorf("X-Devpi-Auth = %q", got)
	}
	if last.Header.Get("Accept") != "application/json" {
		t.Errorf("Accept = %q", last.Header.Get("Accept"))
	}

	tok, err := c.CreateToken(ctx, "alice", CreateRequest{Expires: int64(123), Allowed: []string{"upload"}})
	if err != nil || tok.User() != "alice" {
		t.Fatalf("CreateToken = %v, %v", tok, err)
	}
	if got := (*bodies)[len(*bodies)-1]; got != `{"expires":123,"allowed":["upload"]}` {
		t.Errorf("create body = %s", got)
	}
	_, err = c.CreateToken(ctx, "bob", CreateRequest{})
	if !IsStatus(err, 403) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "Access was denied to this resource. Unauthorized: user_token_create failed permission check") {
		t.Errorf("CreateToken(bob) = %q", err)
	}
	list, err := c.ListTokens(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].ID != "aaaa2345" || list[1].Restrictions[0] != "expires=1" {
		t.Errorf("ListTokens = %+v, %v", list, err)
	}
	msg, err := c.DeleteToken(ctx, "alice", "abcd2345")
	if err != nil || msg != "token abcd2345 deleted" {
		t.Errorf("DeleteToken = %q, %v", msg, err)
	}
	if got := (*reqs)[len(*reqs)-1].URL.Path; got != "/alice/+tokens/abcd2345" {
		t.Errorf("delete path = %s", got)
	}
	_, err = c.DeleteToken(ctx, "alice", "gxne2345")
	if !IsStatus(err, 404) || !strings.HasSuffix(err.Error(), "404 Not Found: Not Found The following resource could not be found: No token with id gxne2345 & that's that") {
		t.Errorf("HTML error page: %v", err)
	}
}

func mustAPI(t *testing.T, c *Client) *APIInfo {
	t.Helper()
	info, err := c.API(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestClientFailures(t *testing.T) {
	srv, _, _ := fakeServer(t, []byte("k"))
	auth := &Auth{User: "alice", Secret: "s3cret-session"}
	var errs []error

	// A port that was just free: nothing listens there.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	_, err := client(t, dead, auth).API(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dead server: %v", err)
	}
	errs = append(errs, err)

	// A redirect to another host must not carry X-Devpi-Auth there.
	var leaked atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("X-Devpi-Auth"))
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/+api", http.StatusFound)
	}))
	defer redirector.Close()
	_, err = client(t, redirector.URL, auth).API(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refusing to send credentials") || errors.Is(err, ErrUnreachable) {
		t.Errorf("cross-host redirect: %v", err)
	}
	if v, _ := leaked.Load().(string); v != "" {
		t.Errorf("the credentials reached the other host: %q", v)
	}
	errs = append(errs, err)

	_, err = client(t, srv.URL+"/html/", auth).API(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not devpi-server's JSON") {
		t.Errorf("html answer: %v", err)
	}
	errs = append(errs, err)

	c := client(t, srv.URL, auth)
	for _, bad := range []string{"", ".", "..", "a/b", "x?y"} {
		if _, err := c.ListTokens(context.Background(), bad); err == nil {
			t.Errorf("ListTokens(%q) was sent", bad)
		}
	}
	for _, bad := range []string{"", "..", "ab/cd", "abc d", "abcd-234"} {
		_, err := c.DeleteToken(context.Background(), "alice", bad)
		if err == nil {
			t.Errorf("DeleteToken(%q) was sent", bad)
		}
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("error leaks the secret or spans lines: %v", err)
		}
	}
	if s := fmt.Sprintf("%v %+v %s", Auth{User: "u", Secret: "s3cret"}, &Auth{User: "u", Secret: "s3cret"}, Auth{Secret: "s3cret"}); strings.Contains(s, "s3cret") {
		t.Errorf("Auth formatting leaks: %s", s)
	}
}

func TestParseRoot(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:3141":       "http://127.0.0.1:3141/",
		"https://h/devpi":             "https://h/devpi/",
		" http://h/x/?q=1#f ":         "http://h/x/",
		"http://h/with%20space/index": "http://h/with%20space/index/",
	} {
		u, err := ParseRoot(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseRoot(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h/", "h:3141", "http://user:pw@h/", "/path",
		"http://alice:S3c#ret@h/devpi/", "http://alice:S3c/ret@h/", "http://alice:31337@h/"} {
		_, err := ParseRoot(bad)
		if err == nil {
			t.Errorf("ParseRoot(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "S3c") || strings.Contains(err.Error(), "31337") {
			t.Errorf("ParseRoot(%q): the password is in the error: %v", bad, err)
		}
	}
	c := client(t, "http://h/root", nil)
	if got := c.URL("a b", "+tokens", "x/y"); got != "http://h/root/a%20b/+tokens/x%2Fy" {
		t.Errorf("URL = %s", got)
	}
}

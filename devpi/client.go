package devpi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/token"
)

// ErrUnreachable is wrapped when no HTTP answer came from the server.
var ErrUnreachable = errors.New("cannot reach devpi-server")

var errRedirect = errors.New("redirect")

// ServerError is a non-2xx answer; Message is the server's own text.
type ServerError struct {
	Method, URL string
	Status      int
	StatusText  string
	Message     string
}

func (e *ServerError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.URL, e.StatusText, msg)
}

// IsStatus reports whether err is a ServerError with the given status.
func IsStatus(err error, status int) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Status == status
}

// Auth is a user name and its secret: a login session's password or a token.
type Auth struct {
	User   string
	Secret string
}

// String never shows the secret.
func (a Auth) String() string { return a.User + ":<redacted>" }

// Format routes every fmt verb through String.
func (a Auth) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

// Client calls one devpi-server. Root is its root URL with a trailing slash.
type Client struct {
	Root *url.URL
	Auth *Auth
	// HTTP is used when set; the default has timeouts and never carries
	// credentials to another host on a redirect.
	HTTP      *http.Client
	UserAgent string
}

// ParseRoot checks and normalises a server root URL (see
// safeurl.ParseRoot).
func ParseRoot(raw string) (*url.URL, error) { return safeurl.ParseRoot(raw) }

// DefaultHTTPClient returns the client used when Client.HTTP is nil.
func DefaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{
		Transport: tr,
		Timeout:   2 * time.Minute,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: too many", errRedirect)
			}
			// X-Devpi-Auth is not a header Go drops on a redirect.
			if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
				return fmt.Errorf("%w to %s://%s: refusing to send credentials there", errRedirect, req.URL.Scheme, req.URL.Host)
			}
			return nil
		},
	}
}

// URL resolves a path relative to the root, escaping each segment.
func (c *Client) URL(segments ...string) string {
	u := *c.Root
	esc := make([]string, len(segments))
	for i, s := range segments {
		esc[i] = url.PathEscape(s)
	}
	u.Path = c.Root.Path + strings.Join(segments, "/")
	u.RawPath = c.Root.EscapedPath() + strings.Join(esc, "/")
	return u.String()
}

type reply struct {
	Type    string          `json:"type"`
	Result  json.RawMessage `json:"result"`
	Message any             `json:"message"`
}

func (c *Client) do(ctx context.Context, method, target string, body any, result any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if c.Auth != nil {
		req.Header.Set("X-Devpi-Auth", base64.StdEncoding.EncodeToString([]byte(c.Auth.User+":"+c.Auth.Secret)))
	}
	hc := c.HTTP
	if hc == nil {
		hc = DefaultHTTPClient()
	}
	resp, err := hc.Do(req)
	if err != nil {
		if unreachable(err) {
			return "", fmt.Errorf("%w at %s: %s", ErrUnreachable, c.Root.Redacted(), netReason(err))
		}
		return "", fmt.Errorf("%s %s: %s", method, target, netReason(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", fmt.Errorf("%w at %s: reading the answer: %s", ErrUnreachable, c.Root.Redacted(), netReason(err))
	}
	var r reply
	jsonErr := json.Unmarshal(raw, &r)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := ""
		if jsonErr == nil {
			msg = messageText(r.Message)
		} else {
			msg = htmlMessage(raw)
		}
		return "", &ServerError{Method: method, URL: target, Status: resp.StatusCode, StatusText: resp.Status, Message: msg}
	}
	if jsonErr != nil {
		return "", fmt.Errorf("%s %s: the answer is not devpi-server's JSON (is %s a devpi-server?)", method, target, c.Root.Redacted())
	}
	if result != nil && len(r.Result) > 0 {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return "", fmt.Errorf("%s %s: unexpected result: %v", method, target, err)
		}
	}
	return messageText(r.Message), nil
}

// messageText folds the server's message, which can span lines or be a list,
// into one line.
func messageText(m any) string {
	switch v := m.(type) {
	case nil:
		return ""
	case string:
		return msg.OneLine(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// unreachable tells "no answer" (refused, reset, timed out, no such host)
// from a server that answered in a way we refuse (a redirect elsewhere, a
// certificate that does not verify).
func unreachable(err error) bool {
	var tlsErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	if errors.As(err, &tlsErr) || errors.As(err, &hostErr) || errors.As(err, &authErr) {
		return false
	}
	if errors.Is(err, errRedirect) {
		return false
	}
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Compiled on first use: only an HTML error page needs them.
var (
	htmlContent = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?s)<div id="content">(.*?)</div>`) })
	htmlTag     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?s)<[^>]*>`) })
)

// htmlMessage reads the message of an error page that devpi-web renders
// instead of JSON: the text of its content block.
func htmlMessage(body []byte) string {
	m := htmlContent().FindSubmatch(body)
	if m == nil {
		return ""
	}
	return msg.OneLine(html.UnescapeString(string(htmlTag().ReplaceAll(m[1], []byte(" ")))))
}

func netReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// APIInfo is the result of GET /+api.
type APIInfo struct {
	Login       string `json:"login"`
	Index       string `json:"index"`
	SimpleIndex string `json:"simpleindex"`
	PyPISubmit  string `json:"pypisubmit"`
	// AuthStatus is ["ok", user, groups] or ["noauth", "", []] (or
	// "expired" for a stale session).
	AuthStatus []any `json:"authstatus"`
}

// AuthOK reports whether the server accepted the credentials, and as whom.
func (a *APIInfo) AuthOK() (user string, ok bool) {
	if len(a.AuthStatus) < 2 || a.AuthStatus[0] != "ok" {
		return "", false
	}
	user, _ = a.AuthStatus[1].(string)
	return user, true
}

// AuthState is the first field of authstatus ("ok", "noauth", "expired").
func (a *APIInfo) AuthState() string {
	if len(a.AuthStatus) == 0 {
		return ""
	}
	s, _ := a.AuthStatus[0].(string)
	return s
}

// API calls GET /+api.
func (c *Client) API(ctx context.Context) (*APIInfo, error) {
	var info APIInfo
	if _, err := c.do(ctx, http.MethodGet, c.URL("+api"), nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Session is what /+login hands out: a secret valid for Expiration seconds.
type Session struct {
	Password   string `json:"password"`
	Expiration int    `json:"expiration"`
}

// Login exchanges a password for a session secret. A token can not log in
// this way; the server answers 401.
func (c *Client) Login(ctx context.Context, user, password string) (*Session, error) {
	var s Session
	body := map[string]string{"user": user, "password": password}
	if _, err := c.do(ctx, http.MethodPost, c.URL("+login"), body, &s); err != nil {
		return nil, err
	}
	if s.Password == "" {
		return nil, errors.New("login: the server sent no session")
	}
	return &s, nil
}

// CreateRequest is the body of POST /USER/+token-create. Nil fields are left
// out, so the server applies its defaults (one year).
type CreateRequest struct {
	Expires  any      `json:"expires,omitempty"` // int64 epoch or "never"
	Allowed  []string `json:"allowed,omitempty"`
	Indexes  []string `json:"indexes,omitempty"`
	Projects []string `json:"projects,omitempty"`
}

// checkUser refuses user names that would change the URL's meaning.
func checkUser(user string) error {
	if user == "" || user == "." || user == ".." || strings.ContainsAny(user, "/\\?#") {
		return fmt.Errorf("%q is not a devpi user name", user)
	}
	return nil
}

// checkTokenID refuses anything but devpi-tokens' id characters, so an id
// can never become a path such as "..".
func checkTokenID(id string) error {
	if id == "" || len(id) > 64 || strings.Trim(id, token.IDAlphabet) != "" {
		return fmt.Errorf("%q is not a token id (devpi token ids are 8 letters and digits)", id)
	}
	return nil
}

// CreateToken asks the server for a new root token for user.
func (c *Client) CreateToken(ctx context.Context, user string, req CreateRequest) (*token.Token, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	var res struct {
		Token string `json:"token"`
	}
	if _, err := c.do(ctx, http.MethodPost, c.URL(user, "+token-create"), req, &res); err != nil {
		return nil, err
	}
	t, err := token.Parse(res.Token)
	if err != nil {
		return nil, fmt.Errorf("the server answered with an unreadable token: %v", err)
	}
	return t, nil
}

// TokenInfo is what the server keeps about a token it issued.
type TokenInfo struct {
	ID           string   `json:"id"`
	Restrictions []string `json:"restrictions"`
}

// ListTokens returns user's tokens sorted by id.
func (c *Client) ListTokens(ctx context.Context, user string) ([]TokenInfo, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	var res struct {
		Tokens map[string]TokenInfo `json:"tokens"`
	}
	if _, err := c.do(ctx, http.MethodGet, c.URL(user, "+tokens"), nil, &res); err != nil {
		return nil, err
	}
	out := make([]TokenInfo, 0, len(res.Tokens))
	for id, info := range res.Tokens {
		info.ID = id
		if info.Restrictions == nil {
			info.Restrictions = []string{}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteToken removes a token on the server, which revokes every token
// derived from it. It returns the server's message.
func (c *Client) DeleteToken(ctx context.Context, user, id string) (string, error) {
	if err := checkUser(user); err != nil {
		return "", err
	}
	if err := checkTokenID(id); err != nil {
		return "", err
	}
	return c.do(ctx, http.MethodDelete, c.URL(user, "+tokens", id), nil, nil)
}

// IndexConfig is the part of an index's configuration devpi-credd uses.
type IndexConfig struct {
	Type  string   `json:"type"`
	Bases []string `json:"bases"`
}

// Index reads USER/INDEX's configuration, without its project list.
func (c *Client) Index(ctx context.Context, index string) (*IndexConfig, error) {
	user, name, ok := strings.Cut(index, "/")
	if !ok || checkUser(user) != nil || checkUser(name) != nil {
		return nil, fmt.Errorf("index %q is not USER/INDEX", index)
	}
	var ic IndexConfig
	if _, err := c.do(ctx, http.MethodGet, c.URL(user, name)+"?no_projects=", nil, &ic); err != nil {
		return nil, err
	}
	return &ic, nil
}

package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
)

// IDTokenEnv carries a CI job's identity token (a GitLab CI id_tokens:
// entry named so, or copied into it); the job's child never sees it.
const IDTokenEnv = "DEVPI_CREDD_ID_TOKEN"

// AudienceEnv is the variable GitLab CI jobs conventionally name an
// id_tokens: entry for aud (PyPI's docs, and the id and ambient-id
// libraries, read PYPI_ID_TOKEN for "pypi"): aud with ASCII letters
// upper-cased and every other character but A-Z and 0-9 made _, then
// _ID_TOKEN. devpi.example.com reads DEVPI_EXAMPLE_COM_ID_TOKEN.
func AudienceEnv(aud string) string {
	b := make([]rune, 0, len(aud)+len("_ID_TOKEN"))
	for _, r := range aud {
		switch {
		case 'a' <= r && r <= 'z':
			r -= 'a' - 'A'
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		default:
			r = '_'
		}
		b = append(b, r)
	}
	return string(b) + "_ID_TOKEN"
}

// IDTokenVars are the variables an identity token for aud is read from:
// whichever held it, the job's child must not see them.
func IDTokenVars(aud string) []string {
	if v := AudienceEnv(aud); v != IDTokenEnv {
		return []string{IDTokenEnv, v}
	}
	return []string{IDTokenEnv}
}

// ErrNoIdentity: this is not a CI job that gives its jobs an identity.
var ErrNoIdentity = errors.New("no identity token")

// ErrAudience: the audience is not one to get an identity token for, or
// the exchange names another than the one this client chose.
var ErrAudience = errors.New("audience refused")

// ErrBadIDToken: the identity token the job handed over (a file, a
// variable) cannot be read or is not one token.
var ErrBadIDToken = errors.New("bad identity token")

// kinded gives err a sentinel that callers tell it by, without changing
// what it says.
type kinded struct{ kind, err error }

func (k kinded) Error() string   { return k.err.Error() }
func (k kinded) Unwrap() []error { return []error{k.kind, k.err} }

// Client is the CI side: it asks the job's CI system for an identity token
// and trades it at the exchange.
type Client struct {
	// Base is the exchange's URL (scheme and host; the paths are PyPI's).
	Base *url.URL
	HTTP *http.Client
	// Getenv reads the job's environment.
	Getenv func(string) string
	// For an identity token command: the environment it starts from
	// (default os.Environ()), where its stderr goes (default os.Stderr),
	// and how long it may take (default IDTokenCommandTimeout).
	Environ        []string
	Stderr         io.Writer
	CommandTimeout time.Duration
}

// IDTokenRequest is the identity token a job asks for.
type IDTokenRequest struct {
	// Audience the token is issued for: the client's choice, never what
	// the exchange names (it could name another service's, and collect a
	// token that service takes). "" is DefaultAudience of the exchange.
	Audience string
	// File, when given, holds the token.
	File string
	// Command, when given, prints the token: a shell command line, such
	// as a CI system's own tool, that finds the audience in
	// $DEVPI_CREDD_AUDIENCE.
	Command string
}

// DefaultAudience is the audience a job asks for at the exchange base:
// its host name, lower-case, without port or trailing dot. An exchange
// whose config sets that needs no --audience.
func DefaultAudience(base *url.URL) string {
	return strings.TrimSuffix(strings.ToLower(base.Hostname()), ".")
}

// ResolveAudience is the audience a job asks for at base: given, else
// DefaultAudience; never PyPI's, nor one that cannot travel as text.
func ResolveAudience(base *url.URL, given string) (string, error) {
	aud := given
	if aud == "" {
		aud = DefaultAudience(base)
	}
	switch {
	case given == "" && strings.ContainsFunc(base.Hostname(), func(r rune) bool { return r > unicode.MaxASCII }):
		// The request goes to the name's IDNA (xn--) form, which lower
		// case need not match: "İ" is "i" to strings.ToLower, "i̇" to
		// IDNA, so https://DEVPİ.example would ask for devpi.example's
		// audience and send the token to another host.
		return "", fmt.Errorf("%w: the exchange's host name %q is not ASCII: give it in its xn-- form, or --audience", ErrAudience, base.Hostname())
	case aud == "":
		return "", fmt.Errorf("%w: the exchange %s has no host name to take it from", ErrAudience, base.Redacted())
	case aud != strings.TrimSpace(aud) || strings.ContainsFunc(aud, unicode.IsControl):
		return "", fmt.Errorf("%w: %q has white space around it or a control character", ErrAudience, aud)
	case slices.Contains(config.PyPIAudiences, strings.ToLower(aud)):
		return "", fmt.Errorf("%w: %q is PyPI's: an identity token for it would be good at PyPI", ErrAudience, aud)
	}
	return aud, nil
}

// CheckBase refuses an exchange the identity token must not travel to:
// plain http (but on this machine's loopback, as behind a local proxy)
// or with user info.
func CheckBase(u *url.URL) error {
	switch {
	case u.User != nil || u.Host == "":
		return fmt.Errorf("the exchange %s: give scheme and host only", u.Redacted())
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("the exchange %s is plain http: the identity token and the devpi token would cross the network in clear text; use https", u)
	}
	return fmt.Errorf("the exchange %s is not an http(s) URL", u.Redacted())
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Audience asks the exchange which audience identity tokens must name:
// only to check it against the client's own choice.
func (c *Client) Audience(ctx context.Context) (string, error) {
	if err := CheckBase(c.Base); err != nil {
		return "", err
	}
	var out struct {
		Audience string `json:"audience"`
	}
	if err := c.do(ctx, http.MethodGet, c.url(PathAudience), nil, "", &out); err != nil {
		return "", fmt.Errorf("asking the exchange %s for its audience: %w", c.Base, err)
	}
	switch {
	case out.Audience == "":
		return "", fmt.Errorf("the exchange %s names no audience", c.Base)
	case slices.Contains(config.PyPIAudiences, strings.ToLower(out.Audience)):
		return "", fmt.Errorf("%w: the exchange %s names PyPI's audience %q: refusing to get an identity token PyPI would take", ErrAudience, c.Base, msg.OneLine(out.Audience))
	}
	return out.Audience, nil
}

// checkAudience refuses an exchange that names another audience than
// aud: its tokens would be refused there, and a job must not get one for
// whatever a server names.
func (c *Client) checkAudience(ctx context.Context, aud string) error {
	named, err := c.Audience(ctx)
	if err != nil {
		return err
	}
	if named != aud {
		return fmt.Errorf("%w: the exchange %s names the audience %q, this job asks for %q (the exchange's host name, or --audience): no identity token was got for it",
			ErrAudience, c.Base, safeurl.Cap(msg.OneLine(named), 120), aud)
	}
	return nil
}

// IDToken gets the job's identity token for r's audience, from the first
// of: r.File; r.Command; $DEVPI_CREDD_ID_TOKEN; AudienceEnv (GitLab's
// convention); GitHub Actions' token service
// ($ACTIONS_ID_TOKEN_REQUEST_URL with $ACTIONS_ID_TOKEN_REQUEST_TOKEN).
// Before any token is asked for, the exchange must name the same audience.
// Where it came from is said in source; ErrNoIdentity, before any request,
// when there is none.
func (c *Client) IDToken(ctx context.Context, r IDTokenRequest) (jwt, source string, err error) {
	aud, err := ResolveAudience(c.Base, r.Audience)
	if err != nil {
		return "", "", err
	}
	// A token in hand is read first (a bad file is the job's mistake, said
	// before any request); one that must be asked for waits for the check.
	var ask func(context.Context) (string, error)
	switch {
	case r.File != "":
		b, _, err := safefile.Read(r.File, maxIDToken)
		if err != nil {
			return "", "", kinded{ErrBadIDToken, fmt.Errorf("reading the identity token: %w", err)}
		}
		jwt, source = string(b), "file "+r.File
	case r.Command != "":
		ask, source = func(ctx context.Context) (string, error) { return c.command(ctx, r.Command, aud) }, "--id-token-command"
	case c.Getenv(IDTokenEnv) != "":
		jwt, source = c.Getenv(IDTokenEnv), "$"+IDTokenEnv
	case c.Getenv(AudienceEnv(aud)) != "":
		jwt, source = c.Getenv(AudienceEnv(aud)), "$"+AudienceEnv(aud)
	case c.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "" && c.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN") != "":
		u, err := url.Parse(c.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"))
		if err != nil || u.Scheme != "https" {
			return "", "", errors.New("$ACTIONS_ID_TOKEN_REQUEST_URL is not an https URL")
		}
		ask, source = func(ctx context.Context) (string, error) { return c.github(ctx, u, aud) }, "GitHub Actions"
	default:
		return "", "", fmt.Errorf("%w: on GitHub Actions give the job 'permissions: id-token: write'; on GitLab CI an 'id_tokens:' entry %s (or %s) with 'aud: %s'; elsewhere --id-token-command or --id-token-file",
			ErrNoIdentity, AudienceEnv(aud), IDTokenEnv, aud)
	}
	if ask == nil {
		if jwt, err = checkIDToken(jwt, source); err != nil {
			return "", "", kinded{ErrBadIDToken, err}
		}
	}
	if err := c.checkAudience(ctx, aud); err != nil {
		return "", "", err
	}
	if ask != nil {
		if jwt, err = ask(ctx); err != nil {
			return "", "", err
		}
		if jwt, err = checkIDToken(jwt, source); err != nil {
			if r.Command != "" {
				err = kinded{ErrIDTokenCommand, err}
			}
			return "", "", err
		}
	}
	// GitHub's token service was asked for aud; a token from anywhere
	// else is the job's word for it.
	if r.Command != "" || ask == nil {
		if err := checkTokenAudience(jwt, source, aud); err != nil {
			if r.Command != "" {
				return "", "", kinded{ErrIDTokenCommand, err}
			}
			return "", "", kinded{ErrBadIDToken, err}
		}
	}
	return jwt, source, nil
}

// checkIDToken trims what a source gave; nothing, or more than one word
// (a tool that printed a warning beside the token), is not sent anywhere.
func checkIDToken(jwt, source string) (string, error) {
	jwt = strings.TrimSpace(jwt)
	switch {
	case jwt == "":
		return "", fmt.Errorf("the identity token from %s is empty", source)
	case strings.ContainsFunc(jwt, unicode.IsSpace):
		return "", fmt.Errorf("the identity token from %s is more than one word", source)
	}
	return jwt, nil
}

// checkTokenAudience refuses to send a token whose aud (read unverified:
// the exchange verifies) is not exactly aud, one string, as the exchange
// requires: a job handed a token for another audience (AWS's, PyPI's)
// would give a credential good elsewhere to whoever runs this exchange.
// The error names the token's audience, clipped, never the token.
func checkTokenAudience(jwt, source, aud string) error {
	raw, err := parseRaw(jwt)
	if err != nil {
		return fmt.Errorf("the identity token from %s is %v: not sent", source, err)
	}
	switch got := raw.Aud.(type) {
	case string:
		if got == aud {
			return nil
		}
		return fmt.Errorf("the identity token from %s is for the audience %q, not %q (this exchange's): not sent", source, clip(got), aud)
	case nil:
		return fmt.Errorf("the identity token from %s names no audience, not %q (this exchange's): not sent", source, aud)
	default:
		b, _ := json.Marshal(got)
		return fmt.Errorf("the identity token from %s names the audience %s, not exactly %q (this exchange's): not sent", source, clip(string(b)), aud)
	}
}

// maxIDToken bounds an identity token read from a file or a command.
const maxIDToken = 64 << 10

// github asks GitHub Actions' token service for a token for aud.
func (c *Client) github(ctx context.Context, u *url.URL, aud string) (string, error) {
	q := u.Query()
	q.Set("audience", aud)
	u.RawQuery = q.Encode()
	var out struct {
		Value string `json:"value"`
	}
	if err := c.do(ctx, http.MethodGet, u.String(), nil, "bearer "+c.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN"), &out); err != nil {
		return "", fmt.Errorf("asking GitHub Actions for the job's identity token: %w", err)
	}
	if out.Value == "" {
		return "", errors.New("GitHub Actions gave no identity token")
	}
	return out.Value, nil
}

// Exchange trades jwt for a devpi token.
func (c *Client) Exchange(ctx context.Context, jwt string) (*Minted, error) {
	if err := CheckBase(c.Base); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"token": jwt})
	var out Minted
	if err := c.do(ctx, http.MethodPost, c.url(PathMintToken), body, "", &out); err != nil {
		return nil, fmt.Errorf("the exchange %s: %w", c.Base, err)
	}
	if !out.Success || out.Token == "" {
		return nil, fmt.Errorf("the exchange %s gave no token", c.Base)
	}
	return &out, nil
}

func (c *Client) url(path string) string {
	return c.Base.ResolveReference(&url.URL{Path: path}).String()
}

// do sends one request; an answer other than 200 is an error with what
// the server said (PyPI's error body: its message), on one line.
func (c *Client) do(ctx context.Context, method, u string, body []byte, auth string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	// The exchange answers itself: a redirect could carry the identity
	// token elsewhere, or to plain http. (GitHub's token service, asked
	// with a bearer, keeps Go's rules: no Authorization to another host.)
	hc := *c.HTTP
	if auth == "" {
		hc.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
			return fmt.Errorf("redirected to %s: not followed", r.URL.Redacted())
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var rf Refusal
		if json.Unmarshal(data, &rf) == nil && rf.Message != "" {
			rf.Status = resp.StatusCode
			return &rf
		}
		return fmt.Errorf("%s", resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the answer is not JSON: %v", err)
	}
	return nil
}

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

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// IDTokenEnv carries a GitLab CI job's identity token (an id_tokens:
// entry named so, or copied into it); the job's child never sees it.
const IDTokenEnv = "DEVPI_CREDD_ID_TOKEN"

// ErrNoIdentity: this is not a CI job that gives its jobs an identity.
var ErrNoIdentity = errors.New("no identity token: on GitHub Actions give the job 'permissions: id-token: write'; on GitLab CI an 'id_tokens:' entry with the exchange's audience, passed as $" + IDTokenEnv + "; elsewhere --id-token-file")

// Client is the CI side: it asks the job's CI system for an identity token
// and trades it at the exchange.
type Client struct {
	// Base is the exchange's URL (scheme and host; the paths are PyPI's).
	Base *url.URL
	HTTP *http.Client
	// Getenv reads the job's environment.
	Getenv func(string) string
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

// Audience asks the exchange which audience identity tokens must name.
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
		return "", fmt.Errorf("the exchange %s names PyPI's audience %q: refusing to get an identity token PyPI would take", c.Base, msg.OneLine(out.Audience))
	}
	return out.Audience, nil
}

// IDToken gets the job's identity token: from file when given; else
// $DEVPI_CREDD_ID_TOKEN (GitLab CI: an id_tokens: entry, issued for the
// exchange's audience); else GitHub Actions' token service
// ($ACTIONS_ID_TOKEN_REQUEST_URL with $ACTIONS_ID_TOKEN_REQUEST_TOKEN),
// asked for the audience the exchange names. Where it came from is said in
// source; ErrNoIdentity, before any request, when there is none.
func (c *Client) IDToken(ctx context.Context, file string) (jwt, source string, err error) {
	switch {
	case file != "":
		b, _, err := safefile.Read(file, 64<<10)
		if err != nil {
			return "", "", fmt.Errorf("reading the identity token: %w", err)
		}
		return strings.TrimSpace(string(b)), "file " + file, nil
	case c.Getenv(IDTokenEnv) != "":
		return strings.TrimSpace(c.Getenv(IDTokenEnv)), "$" + IDTokenEnv, nil
	case c.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "" && c.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN") != "":
		u, err := url.Parse(c.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"))
		if err != nil || u.Scheme != "https" {
			return "", "", errors.New("$ACTIONS_ID_TOKEN_REQUEST_URL is not an https URL")
		}
		audience, err := c.Audience(ctx)
		if err != nil {
			return "", "", err
		}
		q := u.Query()
		q.Set("audience", audience)
		u.RawQuery = q.Encode()
		var out struct {
			Value string `json:"value"`
		}
		if err := c.do(ctx, http.MethodGet, u.String(), nil, "bearer "+c.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN"), &out); err != nil {
			return "", "", fmt.Errorf("asking GitHub Actions for the job's identity token: %w", err)
		}
		if out.Value == "" {
			return "", "", errors.New("GitHub Actions gave no identity token")
		}
		return out.Value, "GitHub Actions", nil
	}
	return "", "", ErrNoIdentity
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

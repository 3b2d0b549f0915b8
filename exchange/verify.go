package exchange

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
)

// Algorithms an identity token may be signed with: GitHub's and GitLab's
// (RS256) and ES256. Never "none", never HMAC: a verifier that took HMAC
// could be handed a token "signed" with the issuer's public key.
var Algorithms = []string{"RS256", "ES256"}

// joseAlgorithms are Algorithms, as go-jose takes them.
var joseAlgorithms = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(Algorithms))
	for i, a := range Algorithms {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 30 * time.Second

// Identity is a verified identity token.
type Identity struct {
	Issuer  string
	Subject string
	JTI     string
	Expiry  time.Time
	// Audience is the token's aud, one string (checked again against the
	// config in force when the exchange mints).
	Audience string
	// ReplayKey is what the replay store remembers the token by: its
	// issuer and jti; for a token without jti (Google's, older
	// Buildkite's), its issuer and the SHA-256 of what its signature
	// covers (see replayKey).
	ReplayKey string
	// Claims are the token's claims that are strings (and integers, as
	// their JSON text), plus "workflow_file" (see stringClaims).
	Claims map[string]string
}

// Verifier checks identity tokens: signature (keys from the issuer's
// discovery document, cached, fetched again for an unknown key id),
// issuer, audience, and times with Leeway.
type Verifier struct {
	// HTTP fetches discovery documents and keys (https only). The
	// Verifier uses a copy that follows no redirect off https.
	HTTP *http.Client
	Now  func() time.Time

	mu      sync.Mutex
	issuers map[string]*issuer
	client  *http.Client // HTTP, redirects checked (httpsOnly)
}

// httpClient is v.HTTP, copied, with a CheckRedirect that refuses a
// redirect to anything but https before it is followed (then the caller's
// own check, if any): an issuer, or a proxy in front of one, must not send
// the keys' fetch to plain http, where anyone on the path could serve
// keys of their own.
func (v *Verifier) httpClient() *http.Client {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client != nil {
		return v.client
	}
	c := http.Client{}
	if v.HTTP != nil {
		c = *v.HTTP
	}
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("a redirect to %s, which is not https: not followed", clip(req.URL.Redacted()))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	v.client = &c
	return v.client
}

// finalHTTPS checks where a response came from after redirects: https,
// whatever the URL asked for said.
func finalHTTPS(resp *http.Response) error {
	if resp.Request == nil || resp.Request.URL.Scheme != "https" {
		return errors.New("answered over another scheme than https")
	}
	return nil
}

type issuer struct {
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	lastTry  time.Time
	err      error
}

// rawToken is what a token says before anything is verified: only to pick
// the issuer's keys and to say why a token is refused.
type rawToken struct {
	Alg, Kid, Iss string
	// Aud is the payload's aud as it is (a string, a list, anything):
	// unverified, for the client's check before it sends a token.
	Aud any
}

// base64URLAlphabet is every character of a JWT's parts (no padding, no
// line breaks, which Go's decoder would skip).
const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func parseRaw(s string) (rawToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 {
		return rawToken{}, errors.New("not a JWT (three base64url parts)")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	// Only the issuer of the payload, decoded as anything (a number is
	// no issuer, not a malformed token); the rest is decoded once, after
	// the signature is verified.
	var payload struct {
		Iss any `json:"iss"`
		Aud any `json:"aud"`
	}
	for _, part := range parts {
		if strings.Trim(part, base64URLAlphabet) != "" {
			return rawToken{}, errors.New("not a JWT (a part is not base64url)")
		}
	}
	for i, into := range []any{&header, &payload} {
		// Strict: the JWS libraries verify the signature over the parts
		// decoded and encoded again, so a part whose last character has
		// other spare bits verifies too; a token without jti, remembered
		// by its parts as sent, would be another token each time.
		b, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			return rawToken{}, errors.New("not a JWT (a part is not base64url)")
		}
		if err := json.Unmarshal(b, into); err != nil {
			return rawToken{}, errors.New("not a JWT (a part is not JSON)")
		}
	}
	iss, _ := payload.Iss.(string)
	return rawToken{Alg: header.Alg, Kid: header.Kid, Iss: iss, Aud: payload.Aud}, nil
}

// Verify checks raw, a token for audience of an issuer the caller trusts
// (issuers), and returns who it names, or the refusal: one reason per
// failed check.
func (v *Verifier) Verify(ctx context.Context, raw, audience string, issuers map[string]bool) (*Identity, *Refusal) {
	rt, err := parseRaw(raw)
	if err != nil {
		return nil, refusal(422, CodeInvalidToken, err.Error())
	}
	if !slices.Contains(Algorithms, rt.Alg) {
		return nil, refusal(422, CodeInvalidToken, fmt.Sprintf("signed with alg %q; only %s are accepted", clip(rt.Alg), strings.Join(Algorithms, " and ")))
	}
	iss := rt.Iss
	if !issuers[iss] {
		return nil, refusal(422, CodeUnknownIssuer, fmt.Sprintf("no publisher trusts the issuer %q", clip(iss)))
	}
	is := v.issuer(iss)
	verifier, err := is.get(ctx, v, iss)
	if err != nil {
		rf := refusal(503, CodeUnavailable, "cannot verify now: the issuer's discovery document cannot be fetched")
		rf.Detail = err.Error()
		return nil, rf
	}
	var outcome keyOutcome
	tok, err := verifier.Verify(context.WithValue(ctx, outcomeKey{}, &outcome), raw)
	switch {
	case outcome.unavailable != nil:
		rf := refusal(503, CodeUnavailable, "cannot verify now: the issuer's keys cannot be fetched")
		rf.Detail = outcome.unavailable.Error()
		return nil, rf
	case outcome.unknownKey:
		return nil, refusal(422, CodeInvalidSignature, fmt.Sprintf("signed by a key the issuer does not publish (kid %q)", clip(rt.Kid)))
	case err != nil:
		return nil, refusal(422, CodeInvalidSignature, "the signature does not verify: "+msg.OneLine(err.Error()))
	}
	var rs Refusal
	var payload json.RawMessage
	var claims map[string]any
	if err = tok.Claims(&payload); err == nil {
		claims, err = decodeClaims(payload)
	}
	if err != nil {
		rs.add(422, CodeInvalidToken, "its claims are not JSON")
	}
	now := v.Now()
	// PyPI's strict_aud: aud is the audience itself. A list, even of
	// this audience alone, is a token meant for several parties, any of
	// which could present it here.
	aud, single := claims["aud"].(string)
	switch {
	case !single:
		rs.add(422, CodeInvalidAudience, fmt.Sprintf("issued for several audiences (%q), not for this exchange's audience %q alone", clip(strings.Join(tok.Audience, ",")), audience))
	case aud != audience:
		rs.add(422, CodeInvalidAudience, fmt.Sprintf("issued for %q, not for this exchange's audience %q", clip(aud), audience))
	}
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry.Add(Leeway)) {
		rs.add(422, CodeExpired, fmt.Sprintf("expired at %s", tok.Expiry.UTC().Format(time.RFC3339)))
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		if _, ok := claims[name]; ok {
			if _, num := numberClaim(claims, name); !num {
				rs.add(422, CodeInvalidToken, fmt.Sprintf("its %s is not a number", name))
			}
		}
	}
	if nbf := timeClaim(claims, "nbf"); !nbf.IsZero() && now.Add(Leeway).Before(nbf) {
		rs.add(422, CodeNotYetValid, fmt.Sprintf("not valid before %s", nbf.UTC().Format(time.RFC3339)))
	}
	if !tok.IssuedAt.IsZero() && now.Add(Leeway).Before(tok.IssuedAt) {
		rs.add(422, CodeNotYetValid, fmt.Sprintf("issued in the future, at %s", tok.IssuedAt.UTC().Format(time.RFC3339)))
	}
	jti, _ := claims["jti"].(string)
	if len(rs.Errors) > 0 {
		return nil, &rs
	}
	return &Identity{Issuer: tok.Issuer, Subject: tok.Subject, JTI: jti, Expiry: tok.Expiry, Audience: aud,
		ReplayKey: replayKey(tok.Issuer, jti, raw), Claims: stringClaims(claims)}, nil
}

// replayKey is the issuer and the jti; without a jti, the issuer and the
// SHA-256 of the token's header and payload as sent, which its signature
// covers. Not of the whole token: a signature has other encodings that
// verify (spare bits in its last base64 character; an ECDSA signature's
// s and n-s), each of which would be a new token to a hash of it.
func replayKey(issuer, jti, raw string) string {
	if jti != "" {
		return issuer + " jti " + jti
	}
	signed := strings.TrimSpace(raw)
	signed = signed[:strings.LastIndexByte(signed, '.')]
	sum := sha256.Sum256([]byte(signed))
	return issuer + " sha256 " + hex.EncodeToString(sum[:])
}

func (v *Verifier) issuer(iss string) *issuer {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.issuers == nil {
		v.issuers = map[string]*issuer{}
	}
	is := v.issuers[iss]
	if is == nil {
		is = &issuer{}
		v.issuers[iss] = is
	}
	return is
}

// retryDiscovery: a failed discovery is tried again after this long, not
// per request.
const retryDiscovery = 5 * time.Second

// get returns the issuer's verifier, fetching its discovery document the
// first time (and again after a failure, not more than every few seconds).
func (is *issuer) get(ctx context.Context, v *Verifier, iss string) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	if is.err != nil && v.Now().Sub(is.lastTry) < retryDiscovery {
		return nil, is.err
	}
	is.lastTry = v.Now()
	// The document's context is the verifier's life, not this request's.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), v.httpClient()), 10*time.Second)
	defer cancel()
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	p, err := oidc.NewProvider(dctx, iss)
	if err == nil {
		err = p.Claims(&doc)
	}
	if err == nil && !strings.HasPrefix(doc.JWKSURI, "https://") {
		err = fmt.Errorf("its jwks_uri %q is not https", clip(doc.JWKSURI))
	}
	if err != nil {
		is.err = err
		return nil, err
	}
	is.keys = &keySet{url: doc.JWKSURI, http: v.httpClient(), now: v.Now}
	is.verifier = oidc.NewVerifier(iss, is.keys, &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SupportedSigningAlgs: Algorithms})
	is.err = nil
	return is.verifier, nil
}

// keySet is an issuer's public keys: fetched once and cached, fetched
// again when a token names a key id not among them (a rotation) and when
// they are older than keysMaxAge (a key the issuer withdrew stops
// verifying), at most every refetchEvery. One fetch at a time; tokens of
// cached keys never wait for it. The cached keys keep verifying while the
// issuer is down; a token of a key id they lack is refused as unverifiable
// then, with the reason.
type keySet struct {
	url  string
	http *http.Client
	now  func() time.Time

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // of the keys held; zero before the first fetch
	lastTry   time.Time
	lastErr   error
	inflight  chan struct{} // closed when the fetch under way ends
}

const (
	refetchEvery = 10 * time.Second
	keysMaxAge   = time.Hour
)

// keyOutcome tells Verify, through the context (go-oidc wraps a key set's
// errors in text), why a signature did not verify.
type keyOutcome struct {
	unknownKey  bool
	unavailable error
}

type outcomeKey struct{}

func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	out, _ := ctx.Value(outcomeKey{}).(*keyOutcome)
	if out == nil {
		out = &keyOutcome{}
	}
	jws, err := jose.ParseSigned(raw, joseAlgorithms)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.lookup(ctx, kid)
	if err != nil {
		out.unavailable = err
		return nil, err
	}
	if len(keys) == 0 {
		out.unknownKey = true
		return nil, errors.New("unknown key")
	}
	for _, key := range keys {
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("no published key verifies it")
}

// lookup returns the keys with id kid (all keys for an empty kid),
// fetching the set when there is none yet, kid is unknown or the set is
// stale.
func (k *keySet) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for {
		k.mu.Lock()
		now := k.now()
		found := k.find(kid)
		stale := !k.fetchedAt.IsZero() && now.Sub(k.fetchedAt) >= keysMaxAge
		switch {
		case len(found) > 0 && !stale:
			k.mu.Unlock()
			return found, nil
		case k.inflight != nil:
			wait := k.inflight
			k.mu.Unlock()
			if len(found) > 0 {
				return found, nil // stale, being refreshed: the cached key for now
			}
			select {
			case <-wait:
				continue // the fetch ended: look again
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case !k.lastTry.IsZero() && now.Sub(k.lastTry) < refetchEvery:
			err := k.lastErr
			k.mu.Unlock()
			if len(found) > 0 {
				return found, nil // stale, the issuer down: the cached key
			}
			return nil, err // a recent fetch did not have it either
		}
		k.lastTry = now
		done := make(chan struct{})
		k.inflight = done
		k.mu.Unlock()

		keys, err := k.fetch(ctx)

		k.mu.Lock()
		k.lastErr, k.inflight = err, nil
		if err == nil {
			// Replaced whole: a key the issuer no longer publishes goes.
			k.keys, k.fetchedAt = keys, k.now()
		}
		close(done)
		found = k.find(kid)
		k.mu.Unlock()
		if err != nil && len(found) == 0 {
			return nil, err
		}
		return found, nil
	}
}

func (k *keySet) find(kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			out = append(out, key)
		}
	}
	return out
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := finalHTTPS(resp); err != nil {
		return nil, fmt.Errorf("%s %v", k.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("%s: %v", k.url, err)
	}
	// Public keys only: a symmetric key in a JWKS would let anyone who
	// reads the set sign.
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.IsPublic() && key.Valid() {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// decodeClaims is a token's payload as claims, numbers as their JSON text
// (json.Number), so that an id past 2^53 is not rounded to another's.
func decodeClaims(b []byte) (map[string]any, error) {
	var claims map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&claims); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return claims, nil
}

// numberClaim is claims[name] when it is a number a float64 holds.
func numberClaim(claims map[string]any, name string) (float64, bool) {
	n, ok := claims[name].(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func timeClaim(claims map[string]any, name string) time.Time {
	if f, ok := numberClaim(claims, name); ok {
		return time.Unix(int64(f), 0)
	}
	return time.Time{}
}

// integerText reports whether n is written as an integer: digits, and a
// leading '-' (JSON has no leading zeros nor '+').
func integerText(n json.Number) bool {
	digits := strings.TrimPrefix(string(n), "-")
	return digits != "" && strings.Trim(digits, "0123456789") == ""
}

// stringClaims are the claims a publisher can match: strings, booleans,
// and integers as their JSON text (repository_owner_id may come as a
// string or a number; claims are decoded with decodeClaims), plus the
// derived "workflow_file" and "ci_config_file".
func stringClaims(claims map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range claims {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			// An id, as written; any other number (4242.4, 1e3, -0.4)
			// is no id, and is left out: it matches no publisher.
			if integerText(v) {
				out[k] = string(v)
			}
		case bool:
			out[k] = fmt.Sprint(v)
		}
	}
	// GitHub: job_workflow_ref is "OWNER/REPO/.github/workflows/FILE@REF";
	// PyPI matches the workflow by FILE, in the token's repository (a
	// reusable workflow of another repository is not that repository's
	// release workflow). Derived only, never taken from the token.
	delete(out, "workflow_file")
	if repo := out["repository"]; repo != "" {
		if file, ok := between(out["job_workflow_ref"], repo+"/.github/workflows/", out["ref"], out["sha"]); ok && !strings.Contains(file, "/") {
			out["workflow_file"] = file
		}
	}
	// GitLab: ci_config_ref_uri is "HOST/PROJECT_PATH//FILE@REF"; PyPI
	// matches the top-level pipeline file by its path, in the token's
	// project.
	delete(out, "ci_config_file")
	if project := out["project_path"]; project != "" {
		uri := out["ci_config_ref_uri"]
		if i := strings.Index(uri, "/"+project+"//"); i > 0 && !strings.Contains(uri[:i], "/") {
			if file, ok := between(uri[i:], "/"+project+"//", out["ref_path"], out["sha"]); ok {
				out["ci_config_file"] = file
			}
		}
	}
	return out
}

// between returns FILE of s = prefix + FILE + "@" + one of refs (non-empty
// ones): the whole ref must match, so a file named "a.yml@b.yml" is not
// taken for "a.yml".
func between(s, prefix string, refs ...string) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", false
	}
	for _, ref := range refs {
		if file, ok := strings.CutSuffix(rest, "@"+ref); ok && ref != "" && file != "" && !strings.Contains(file, "@") {
			return file, true
		}
	}
	return "", false
}

// clip keeps what a caller sent short, and on one line, in a message.
func clip(s string) string { return safeurl.Cap(msg.OneLine(s), 120) }

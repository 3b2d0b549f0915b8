// Package testissuer is a CI system's OIDC issuer for the tests and the
// benchmarks of trusted publishing: an https server (with a certificate
// of its own, handed to clients as a CA file) that publishes a discovery
// document and its keys, and hands out GitHub-Actions-shaped identity
// tokens. It is test tooling: nothing shipped imports it.
package testissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is a running issuer.
type Issuer struct {
	// URL is its issuer URL, https://127.0.0.1:PORT.
	URL string
	// CertPEM is the certificate of the CA that signed its certificate:
	// the CA file clients trust it by.
	CertPEM []byte
	// RequestToken is what GitHub puts in ACTIONS_ID_TOKEN_REQUEST_TOKEN:
	// the token endpoint answers only with it.
	RequestToken string
	// Claims are the claims every token gets (before the ones a call
	// gives), GitHub's: repository, ref, workflow, sha, run id.
	Claims map[string]any

	key *rsa.PrivateKey
	kid string
	// retired is the key Rotate replaced, no longer published.
	retired    *rsa.PrivateKey
	retiredKid string
	other      *rsa.PrivateKey // signs tokens with a key id it does not publish
	ec         *ecdsa.PrivateKey

	mu  sync.Mutex
	srv *http.Server
	// redirects answers GET of a path with a redirect (Redirect).
	redirects map[string]string
	l         net.Listener
	// keyFetches counts requests for the key set.
	keyFetches atomic.Int64
}

// KeyFetches is how many times its key set was fetched.
func (is *Issuer) KeyFetches() int64 { return is.keyFetches.Load() }

// Start starts an issuer on 127.0.0.1 (addr "" picks a port).
func Start(addr string) (*Issuer, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	is := &Issuer{key: key, other: other, ec: ec, kid: "test-key-1", RequestToken: randomHex(16)}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ca, err := NewCA()
	if err != nil {
		l.Close()
		return nil, err
	}
	cert, err := ca.tlsLeaf()
	if err != nil {
		l.Close()
		return nil, err
	}
	is.URL, is.CertPEM = "https://"+l.Addr().String(), ca.CertPEM
	is.Claims = map[string]any{
		"repository": "org/repo", "repository_owner": "org", "repository_owner_id": "4242",
		"workflow_ref":     "org/repo/.github/workflows/release.yml@refs/tags/v1.0",
		"job_workflow_ref": "org/repo/.github/workflows/release.yml@refs/tags/v1.0",
		"ref":              "refs/tags/v1.0", "ref_type": "tag", "sha": "0123456789abcdef0123456789abcdef01234567",
		"run_id": "987654321", "sub": "repo:org/repo:ref:refs/tags/v1.0", "event_name": "push",
	}
	is.l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	return is, is.serve()
}

func (is *Issuer) serve() error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.keyFetches.Add(1)
		is.mu.Lock()
		key, kid := is.key, is.kid
		is.mu.Unlock()
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"},
			{Key: &is.ec.PublicKey, KeyID: "test-key-ec", Algorithm: "ES256", Use: "sig"},
		}})
	})
	// GitHub Actions' token service: GET $ACTIONS_ID_TOKEN_REQUEST_URL
	// &audience=AUD with "Authorization: bearer REQUEST_TOKEN".
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive, as at GitHub: the toolkit sends
		// "bearer", uv "Bearer".
		scheme, value, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "bearer") || value != is.RequestToken {
			http.Error(w, `{"message": "bad request token"}`, http.StatusUnauthorized)
			return
		}
		writeJSON(w, map[string]string{"value": is.Sign(map[string]any{"aud": r.URL.Query().Get("audience")})})
	})
	redirecting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		to, ok := is.redirects[r.URL.Path]
		is.mu.Unlock()
		if ok {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: redirecting, ReadHeaderTimeout: 5 * time.Second}
	is.mu.Lock()
	is.srv = srv
	is.mu.Unlock()
	go func() { _ = srv.Serve(is.l) }()
	return nil
}

// Redirect makes the issuer answer GET path ("/jwks",
// "/.well-known/openid-configuration") with a 302 to target: an issuer,
// or a proxy in front of one, that sends its clients elsewhere.
func (is *Issuer) Redirect(path, target string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.redirects == nil {
		is.redirects = map[string]string{}
	}
	is.redirects[path] = target
}

// TokenURL is GitHub's ACTIONS_ID_TOKEN_REQUEST_URL, to which clients add
// "&audience=".
func (is *Issuer) TokenURL() string { return is.URL + "/token?api-version=2.0" }

// Stop stops the issuer (to see what verifying does without it).
func (is *Issuer) Stop() {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.srv != nil {
		_ = is.srv.Close()
		is.srv = nil
	}
}

// claims are the issuer's claims, then the standard ones (iss, iat, nbf,
// exp in five minutes, a fresh jti), then extra (a nil value removes one).
func (is *Issuer) claims(extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{}
	for k, v := range is.Claims {
		c[k] = v
	}
	c["iss"], c["iat"], c["nbf"], c["exp"], c["jti"] = is.URL, now.Unix(), now.Unix(), now.Add(5*time.Minute).Unix(), randomHex(16)
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// Sign is an identity token with the issuer's claims and extra, signed
// RS256 with its published key.
func (is *Issuer) Sign(extra map[string]any) string {
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	return sign(jose.RS256, key, kid, is.claims(extra))
}

// Rotate replaces the published RSA key with a new one, as an issuer
// does on a schedule or after a leak: the old key is no longer published
// (SignRetired still signs with it).
func (is *Issuer) Rotate() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.retired, is.retiredKid = is.key, is.kid
	is.key, is.kid = key, "test-key-"+randomHex(4)
	return nil
}

// SignRetired signs with the key Rotate retired.
func (is *Issuer) SignRetired(extra map[string]any) string {
	is.mu.Lock()
	key, kid := is.retired, is.retiredKid
	is.mu.Unlock()
	return sign(jose.RS256, key, kid, is.claims(extra))
}

// SignES256 is Sign with its published EC key.
func (is *Issuer) SignES256(extra map[string]any) string {
	return sign(jose.ES256, is.ec, "test-key-ec", is.claims(extra))
}

// SignUnknownKey is signed by a key the issuer does not publish.
func (is *Issuer) SignUnknownKey(extra map[string]any) string {
	return sign(jose.RS256, is.other, "test-key-unpublished", is.claims(extra))
}

// SignNone is an unsigned token (alg none).
func (is *Issuer) SignNone(extra map[string]any) string {
	return raw(map[string]any{"alg": "none", "typ": "JWT"}, is.claims(extra), nil)
}

// SignHMACWithPublicKey is "signed" HS256 with the issuer's public key as
// the secret: what a verifier that took HMAC would accept.
func (is *Issuer) SignHMACWithPublicKey(extra map[string]any) string {
	pub, err := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
	if err != nil {
		panic(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return sign(jose.HS256, secret, is.kid, is.claims(extra))
}

func sign(alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return out
}

func raw(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := func(b []byte) string { return base64URL(b) }
	return enc(h) + "." + enc(c) + "." + enc(sig)
}

// CertPool is a pool that trusts the issuer, for in-process clients.
func (is *Issuer) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(is.CertPEM) {
		panic(errors.New("the issuer's certificate does not parse"))
	}
	return p
}

// Client is an http.Client that trusts the issuer.
func (is *Issuer) Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: is.CertPool()}}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("random: %w", err))
	}
	return hex.EncodeToString(b)
}

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

package exchange

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Hole 6 for discovery alone: the issuer redirects its discovery document
// to plain http, where the genuine document is served (so that nothing but
// the scheme is wrong; whoever is on the path could serve a jwks_uri of
// their own there). Refused: no redirect leaves https. (In
// TestKeysNeverOverPlainHTTP the http server answers discovery with a key
// set, which fails to load whatever the redirect check does.)
func TestDiscoveryNeverOverPlainHTTP(t *testing.T) {
	f := newFixture(t, nil)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.issuer.URL, "jwks_uri": f.issuer.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
	}))
	defer plain.Close()
	f.issuer.Redirect("/.well-known/openid-configuration", plain.URL+"/.well-known/openid-configuration")
	if status, m, codes := f.post(t, tokenBody(f.issuer.Sign(map[string]any{"aud": "devpi"}))); status != 503 || m != nil || len(codes) == 0 || codes[0] != CodeUnavailable {
		t.Errorf("discovery redirected to http: %d %v", status, codes)
	}
}

// Tokens without jti are remembered each by its own signed part: a
// second, different token of the same issuer is not the first's replay.
func TestTokensWithoutJTIAreEachTheirOwn(t *testing.T) {
	f := newFixture(t, nil)
	for _, run := range []string{"1001", "1002"} {
		tok := f.issuer.Sign(map[string]any{"aud": "devpi", "jti": nil, "run_id": run})
		if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
			t.Errorf("a token without jti, run %s: %d %v", run, status, codes)
		}
	}
}

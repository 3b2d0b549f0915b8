//go:build e2e

package e2e

import (
	"encoding/base64"
	"net/http"
	"testing"
)

// TestLockedBed: behind nginx and devpi-lockdown, a read without
// credentials gets a 401 (which makes pip and uv ask a keyring), and the
// same read with a token gets through.
func TestLockedBed(t *testing.T) {
	u, _ := setupDaemonUser(t)
	dev := u.newIndex(t, "dev")
	tok := parseToken(t, u.credd(t, 0, "token", "create", "-e", "1h", "-a", "pkg_read").stdout)
	get := func(auth string) *http.Response {
		req, _ := http.NewRequest("GET", bed.locked+dev+"/+simple/", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get(""); r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("without credentials: %s %v, want 401 with WWW-Authenticate", r.Status, r.Header)
	}
	if r := get(u.name + ":" + tok.Reveal()); r.StatusCode != http.StatusOK {
		t.Errorf("with a read token: %s", r.Status)
	}
	if r := get(u.name + ":wrong"); r.StatusCode == http.StatusOK {
		t.Errorf("with a wrong password: %s", r.Status)
	}
}
